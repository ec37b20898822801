//! `faultline run` (placeholder being replaced by its owner).
#[derive(clap::Args, Debug)]
pub struct RunArgs {}
pub fn main(_args: RunArgs) -> anyhow::Result<u8> {
    anyhow::bail!("faultline run is not built yet")
}
