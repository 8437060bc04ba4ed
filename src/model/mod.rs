//! Event log and the World projection.
