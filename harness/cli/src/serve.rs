//! `faultline serve`: serve a run store on localhost: the runs, filterable by verdict, each
//! linked to its report (rendered on first view when missing or stale).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context;

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// The run store.
    #[arg(long, default_value = "store")]
    pub store: PathBuf,
    /// TCP port on 127.0.0.1 (0 picks a free one; the address is printed).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
}

pub fn main(args: ServeArgs) -> anyhow::Result<u8> {
    let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), args.port);
    let server = faultline_reports::serve::Server::bind(&args.store, addr)
        .with_context(|| format!("cannot serve {} on {addr}", args.store.display()))?;
    let local = server.local_addr().context("no local address")?;
    // Tests and scripts read this line to learn the port.
    outln!("serving {} on http://{local}/", args.store.display());
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    server.run().context("server stopped")?;
    Ok(crate::EXIT_VALID)
}
