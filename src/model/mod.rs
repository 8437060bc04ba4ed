//! Event log and the World projection: what is *known* about a run, kept
//! apart from what is sent (protocol) and what is drawn (views).

mod log;
mod world;

#[cfg(test)]
mod tests;

pub use log::EventLog;
pub use world::{
    Access, Channel, ChannelKind, DELIVERIES_KEPT, Delivery, ExitStatus, Lock, LostUpdate, Message,
    OUTPUT_CHUNKS_KEPT, OutputBuffer, OutputChunk, Pool, ProcState, Process, RunError, SharedValue,
    Task, TreeRow, VALUE_HISTORY_KEPT, ValueAccess, World,
};
