//! Named pipelines (`pipelines/*.toml`): which sources, computations and sinks a run wires.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::model::Source;

/// The default pipeline, compiled in.
pub const DEFAULT_PIPELINE: &str = include_str!("../../pipelines/default.toml");

/// A computation a pipeline can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Computation {
    /// Boost-rank velocity and trending events.
    Trending,
    /// Prices by asset, discrepancies and the fused price.
    Fusion,
    /// Price deltas into oracle push batches.
    Debounce,
    /// The paper portfolio and its drawdown tiers.
    Risk,
}

/// A sink a pipeline can write to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkKind {
    /// `journal.jsonl`: every decision, canonically ordered.
    Journal,
    /// The embedded state store.
    Store,
    /// The on-chain keeper (dry-run unless configured to send).
    Chain,
}

/// What a run wires together.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    /// The pipeline's name.
    pub name: String,
    /// Sources to ingest (live) or to keep from a recording (replay).
    pub sources: Vec<Source>,
    /// Computations to run.
    #[serde(default)]
    pub computations: Vec<Computation>,
    /// Sinks to write.
    pub sinks: Vec<SinkKind>,
}

/// Why a pipeline file is unusable.
#[derive(Debug, thiserror::Error)]
#[error("pipeline {origin}: {reason}")]
pub struct PipelineError {
    /// The file (or "default").
    pub origin: String,
    /// What is wrong.
    pub reason: String,
}

impl Pipeline {
    /// The compiled-in default pipeline.
    pub fn default_pipeline() -> Result<Pipeline, PipelineError> {
        Self::parse(DEFAULT_PIPELINE, "default")
    }

    /// Reads a pipeline file.
    pub fn load(path: &Path) -> Result<Pipeline, PipelineError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| PipelineError {
            origin: origin.clone(),
            reason: e.to_string(),
        })?;
        Self::parse(&text, &origin)
    }

    /// Parses pipeline TOML.
    pub fn parse(text: &str, origin: &str) -> Result<Pipeline, PipelineError> {
        let pipeline: Pipeline = toml::from_str(text).map_err(|e| PipelineError {
            origin: origin.to_owned(),
            reason: e.to_string(),
        })?;
        if pipeline.sources.is_empty() {
            return Err(PipelineError {
                origin: origin.to_owned(),
                reason: "names no sources".into(),
            });
        }
        Ok(pipeline)
    }

    /// True when the pipeline ingests `source`.
    pub fn has_source(&self, source: Source) -> bool {
        self.sources.contains(&source)
    }

    /// True when the pipeline runs `computation`.
    pub fn runs(&self, computation: Computation) -> bool {
        self.computations.contains(&computation)
    }

    /// True when the pipeline writes `sink`.
    pub fn writes(&self, sink: SinkKind) -> bool {
        self.sinks.contains(&sink)
    }
}
