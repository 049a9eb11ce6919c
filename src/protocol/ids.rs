//! Newtype identifiers. Each kind of thing the cluster names gets its own type, so a
//! `TaskId` can never be passed where a `WorkerId` is meant.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub struct $name(pub u64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
    };
}

id_type!(
    /// A task, numbered by the scheduler when it first learns the task's key.
    TaskId,
    "t"
);
id_type!(
    /// A worker connection, numbered by the scheduler when the worker registers.
    WorkerId,
    "w"
);
id_type!(
    /// A client connection, numbered by the scheduler when the client connects.
    ClientId,
    "c"
);
id_type!(
    /// Pairs a client's request with the scheduler's reply.
    RequestId,
    "r"
);
id_type!(
    /// A nanny connection, numbered by the scheduler when the nanny registers.
    NannyId,
    "n"
);

/// One assignment of a task to a worker, numbered by the scheduler. Every worker message
/// about a task names the assignment it answers, so an answer that crossed a newer decision
/// on the wire (a `Cancel`, a `Steal`, the same task assigned again) is told from the answer
/// to that decision. The count wraps after 2^32 assignments, far beyond any message's time
/// in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AttemptId(pub u32);

impl fmt::Display for AttemptId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a{}", self.0)
    }
}
