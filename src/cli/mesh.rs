//! `sluice mesh`: the keys an operator exchanges to join a closed mesh — the node's peer id
//! (for the others' `mesh.allowed_peers` and `mesh.bootstrap`) and the operator key's origin
//! (for their `mesh.allowed_origins`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use sluice::mesh::identity::{create_operator_key, load_or_create_identity};

/// Arguments of `sluice mesh`.
#[derive(Debug, Args)]
pub struct MeshArgs {
    #[command(subcommand)]
    command: MeshCommand,
}

#[derive(Debug, Subcommand)]
enum MeshCommand {
    /// Print the node's peer id, creating its identity file (0600) if there is none.
    PeerId {
        /// The identity file (`mesh.identity_file`; by default `mesh_identity.key` in the
        /// output directory).
        #[arg(long, default_value = "state/mesh_identity.key")]
        identity: PathBuf,
    },
    /// Create an operator signing key file (0600, never overwritten) and print its origin.
    OperatorKey {
        /// Where to write it (then set `mesh.operator_key_file`).
        #[arg(long)]
        out: PathBuf,
    },
}

pub fn run(args: MeshArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        MeshCommand::PeerId { identity } => {
            let keypair = load_or_create_identity(&identity).map_err(anyhow::Error::msg)?;
            println!("{}", keypair.public().to_peer_id());
        }
        MeshCommand::OperatorKey { out } => {
            let origin = create_operator_key(&out).map_err(anyhow::Error::msg)?;
            println!("{origin}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
