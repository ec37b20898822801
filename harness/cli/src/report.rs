//! `faultline report` (placeholder being replaced by its owner).
#[derive(clap::Args, Debug)]
pub struct ReportArgs {}
pub fn main(_args: ReportArgs) -> anyhow::Result<u8> {
    anyhow::bail!("faultline report is not built yet")
}
