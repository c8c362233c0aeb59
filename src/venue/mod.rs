//! The venue: a loopback HTTP server that plays a recording back as the real DEX Screener,
//! Birdeye and Pyth Hermes endpoints (HTTP and SSE), at the recorded pace or faster, with the
//! providers' rate limits, optional API keys and fault injection. Live ingest is tested against
//! it end to end, and people stage the pipeline offline with it (`sluice venue`).
//!
//! # URLs
//!
//! Each API sits under its own prefix with the real paths beneath, so `<base>/dexscreener`,
//! `<base>/birdeye` and `<base>/hermes` are drop-in `base_url`s:
//!
//! | path | serves |
//! |---|---|
//! | `/dexscreener/token-boosts/top/v1` | the latest recorded boost list (`[]` before the first) |
//! | `/dexscreener/tokens/v1/{chain}/{a,b,…}` (≤ 30) | the latest recorded pairs of `{chain}` whose `baseToken.address` is requested |
//! | `/birdeye/defi/multi_price?list_address=a,b` (GET; or POST `{"list_address":"a,b"}`) | the latest recorded `multi_price` of the `x-chain` header (default `solana`), `data` cut to the requested addresses (unknown → `null`) |
//! | `/birdeye/defi/price?address=a` | the newer of the latest recorded `/defi/price` body and the address's entry in the latest `multi_price` |
//! | `/hermes/v2/updates/price/stream?ids[]=…` | SSE: every recorded update at its due time, cut to the requested feeds |
//! | `/hermes/v2/updates/price/latest?ids[]=…` | the newest recorded update (stream or REST) per requested feed |
//! | `/_venue/stats` (GET), `/_venue/faults` (GET; POST a spec) | control, for people staging |
//!
//! # Time
//!
//! The venue's recording time is the recording's first envelope time + (wall time since start)
//! × speed. Every endpoint answers from the recording as of that time; past the recording's
//! end it keeps serving the last state (SSE streams stay open, with keep-alives). Rate-limit
//! windows and Hermes' 60 s penalty are recording time too (a 10× venue admits 10× the
//! requests per wall second). Fault durations (`latency`, `hold`, `slow_body`, `drop_every`,
//! `max_stream`, `stall_after`) and the keep-alive interval are wall time: they act on the
//! client's clocks.
//!
//! # Recorded payloads
//!
//! Recorded bytes are served with status 200 whatever they hold, malformed ones included
//! (a live run against the venue then sees what the replay of the same recording does).
//! Error statuses come from auth, rate limits and [fault injection](faults).

pub mod faults;
mod filter;
pub mod limits;
mod query;
mod server;
mod sse;
mod stats;
mod timeline;

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use faults::{
    EndpointFaults, FaultRule, FaultSettings, FaultSpec, FaultSpecError, FaultTarget,
    SERVED_ENDPOINTS, parse_duration, target_name,
};
pub use server::{BIRDEYE_MAX_ADDRESSES, DEXSCREENER_MAX_ADDRESSES};
pub use sse::STREAM_TIMEOUT_MESSAGE;
pub use stats::{EndpointStats, VenueStats};
pub use timeline::Timeline;

use crate::dataflow::run::RecordingInput;
use crate::record::RecordError;
use server::Shared;
use timeline::Clock;

/// Birdeye's per-second limit at the venue unless set (the Starter tier's).
pub const DEFAULT_BIRDEYE_RPS: u32 = 15;

/// How the venue plays a recording.
#[derive(Clone, Debug)]
pub struct VenueOptions {
    /// Recording ms per wall ms: 1.0 is the recorded pace, 20.0 twenty times faster.
    pub speed: f64,
    /// Faults injected from the start (see [`Venue::set_faults`] to change them).
    pub faults: FaultSpec,
    /// Enforce the providers' rate limits (see [`limits`]).
    pub rate_limits: bool,
    /// Birdeye's per-second limit (the account tier's).
    pub birdeye_rps: u32,
    /// When set, Birdeye requests need `X-API-KEY: <key>` (401 otherwise).
    pub birdeye_api_key: Option<String>,
    /// When set, Hermes requests need `Authorization: Bearer <key>` or `?ACCESS_TOKEN=<key>`
    /// (401 otherwise).
    pub hermes_api_key: Option<String>,
    /// SSE keep-alive comment after this long (wall time) without an event.
    pub keepalive: Duration,
    /// Seed of the fault dice: the same seed and request sequence give the same faults.
    pub seed: u64,
}

impl Default for VenueOptions {
    fn default() -> Self {
        VenueOptions {
            speed: 1.0,
            faults: FaultSpec::none(),
            rate_limits: true,
            birdeye_rps: DEFAULT_BIRDEYE_RPS,
            birdeye_api_key: None,
            hermes_api_key: None,
            keepalive: Duration::from_secs(15),
            seed: 0,
        }
    }
}

/// Why the venue cannot start.
#[derive(Debug, thiserror::Error)]
pub enum VenueError {
    /// The recording cannot be read.
    #[error("reading the recording: {0}")]
    Recording(#[from] RecordError),
    /// Loading the recording failed outside the reader (the loading task died).
    #[error("loading the recording: {0}")]
    Load(String),
    /// An option is out of range.
    #[error("venue option: {0}")]
    Options(String),
    /// The listening socket cannot be opened.
    #[error("listening on {addr}: {source}")]
    Bind {
        /// Where.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
}

/// A running venue. Dropping it stops it too (without waiting); [`Venue::shutdown`] waits.
pub struct Venue {
    shared: Arc<Shared>,
    addr: SocketAddr,
    server: Option<JoinHandle<()>>,
}

/// How long [`Venue::shutdown`] waits for connections to finish before cutting them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

impl Venue {
    /// Loads `recording` and serves it on `listen` (port 0: any free port), on the current
    /// tokio runtime.
    pub async fn start(
        recording: RecordingInput,
        listen: SocketAddr,
        options: VenueOptions,
    ) -> Result<Venue, VenueError> {
        // Reading (and decompressing) a recording is blocking work.
        let timeline = tokio::task::spawn_blocking(move || Timeline::load(&recording))
            .await
            .map_err(|e| VenueError::Load(e.to_string()))??;
        Venue::start_timeline(timeline, listen, options).await
    }

    /// Serves an already loaded recording on `listen`.
    pub async fn start_timeline(
        timeline: Timeline,
        listen: SocketAddr,
        options: VenueOptions,
    ) -> Result<Venue, VenueError> {
        if !(options.speed.is_finite() && options.speed > 0.0) {
            return Err(VenueError::Options(format!(
                "speed must be a positive number, got {}",
                options.speed
            )));
        }
        if options.keepalive.is_zero() {
            return Err(VenueError::Options(
                "keepalive must be longer than 0".to_owned(),
            ));
        }
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|source| VenueError::Bind {
                addr: listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| VenueError::Bind {
            addr: listen,
            source,
        })?;
        let clock = Clock::start(timeline.first_ms().unwrap_or(0), options.speed);
        let shared = Arc::new(Shared {
            limits: limits::RateLimits::new(options.rate_limits, &clock, options.birdeye_rps),
            clock,
            speed: options.speed,
            timeline,
            faults: Mutex::new(Arc::new(options.faults)),
            dice: faults::FaultDice::new(options.seed),
            stats: stats::StatsBook::new(),
            birdeye_api_key: options.birdeye_api_key,
            hermes_api_key: options.hermes_api_key,
            dexscreener_api_key: Mutex::new(None),
            keepalive: options.keepalive,
            shutdown: CancellationToken::new(),
        });
        let app = server::router(Arc::clone(&shared));
        let stop = shared.shutdown.clone();
        let server = tokio::spawn(async move {
            let serving = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned());
            if let Err(e) = serving.await {
                tracing::warn!(error = %e, "venue server stopped");
            }
        });
        tracing::debug!(%addr, speed = options.speed, "venue listening");
        Ok(Venue {
            shared,
            addr,
            server: Some(server),
        })
    }

    /// `http://127.0.0.1:PORT` (the address it listens on).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The DEX Screener root: a drop-in `dexscreener.base_url`.
    pub fn dexscreener_url(&self) -> String {
        format!("{}/dexscreener", self.base_url())
    }

    /// The Birdeye root: a drop-in `birdeye.base_url`.
    pub fn birdeye_url(&self) -> String {
        format!("{}/birdeye", self.base_url())
    }

    /// The Hermes root: a drop-in `hermes.base_url`.
    pub fn hermes_url(&self) -> String {
        format!("{}/hermes", self.base_url())
    }

    /// The socket address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The venue's recording time now (ms since the epoch).
    pub fn venue_time_ms(&self) -> u64 {
        self.shared.clock.now_ms()
    }

    /// The recording being served.
    pub fn timeline(&self) -> &Timeline {
        &self.shared.timeline
    }

    /// What it has served so far.
    pub fn stats(&self) -> VenueStats {
        self.shared.stats.snapshot(self.shared.clock.now_ms())
    }

    /// Replaces the faults in force, for requests from now on (and the next events of open
    /// streams; `max_stream` applies to streams opened from now on, `drop_every` and
    /// `stall_after` also to open streams that have none yet, counted from their opening).
    pub fn set_faults(&self, spec: FaultSpec) {
        self.shared.set_faults(spec);
    }

    /// From now on, DEX Screener requests need `X-API-KEY: <key>` (401 otherwise); `None`
    /// takes the requirement away. The public API needs no key, so this is off unless asked:
    /// it proves a configured `DEX_SCREENER_API_KEY` is really sent.
    pub fn require_dexscreener_key(&self, key: Option<String>) {
        *self
            .shared
            .dexscreener_api_key
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = key;
    }

    /// The faults in force.
    pub fn faults(&self) -> FaultSpec {
        self.shared.current_faults()
    }

    /// Stops accepting, ends open streams and held requests, and waits (up to 5 s) for the
    /// connections to finish.
    pub async fn shutdown(mut self) {
        self.shared.shutdown.cancel();
        if let Some(mut server) = self.server.take()
            && tokio::time::timeout(SHUTDOWN_GRACE, &mut server)
                .await
                .is_err()
        {
            tracing::warn!("venue connections did not finish in time; cutting them");
            server.abort();
        }
    }
}

impl Drop for Venue {
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
    }
}
