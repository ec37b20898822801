//! `faultline check` (placeholder being replaced by its owner).
#[derive(clap::Args, Debug)]
pub struct CheckArgs {}
pub fn main(_args: CheckArgs) -> anyhow::Result<u8> {
    anyhow::bail!("faultline check is not built yet")
}
