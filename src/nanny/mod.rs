//! The nanny: a small process that starts workers as its children, watches their exit and
//! memory, restarts them with backoff, and stops them in order. [`core`] decides for the
//! whole nanny (one [`supervisor`] per child), [`server`] carries it out.

/// For the tests of the nanny's state machines: methods of a `Checked(machine)` wrapper that
/// forward each event and then run the machine's `sanity_check`, so every step is checked.
#[cfg(test)]
macro_rules! checked {
    ($($name:ident($($arg:ident: $ty:ty),*);)*) => {
        $(
            fn $name(&mut self, $($arg: $ty),*) {
                self.0.$name($($arg),*);
                self.0.sanity_check();
            }
        )*
    };
}

pub mod core;
pub mod server;
pub mod supervisor;

pub use server::{run_nanny, supervise, NannyConfig, NannyError};
pub use supervisor::{Policy, EXIT_FATAL, EXIT_RETIRED};
