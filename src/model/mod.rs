//! Event log and the World projection: what is *known* about a run, kept
//! apart from what is sent (protocol) and what is drawn (views).

mod log;
mod processes;
mod world;

#[cfg(test)]
mod tests;

pub use log::EventLog;
pub use processes::Processes;
pub use world::{
    Access, Channel, ChannelKind, DELIVERIES_KEPT, Delivery, ERRORS_KEPT, ExitStatus,
    IN_FLIGHT_KEPT, LOST_UPDATES_KEPT, Lock, LostUpdate, MERGED_OUTPUT_BYTES_KEPT, Message,
    OUTPUT_CHUNKS_KEPT, OutputBuffer, OutputChunk, POOL_RESULTS_KEPT, PROCESS_OUTPUT_BYTES_KEPT,
    Pool, ProcState, Process, RunError, STDOUT_BUFFER_BYTES_KEPT, SharedValue, SignalSent,
    StdoutBuffer, Task, ThreadInfo, TreeRow, VALUE_HISTORY_KEPT, ValueAccess, World,
    race_body_updates, race_updates,
};
