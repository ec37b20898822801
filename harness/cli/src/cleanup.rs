//! `faultline cleanup` (placeholder being replaced by its owner).
#[derive(clap::Args, Debug)]
pub struct CleanupArgs {}
pub fn main(_args: CleanupArgs) -> anyhow::Result<u8> {
    anyhow::bail!("faultline cleanup is not built yet")
}
