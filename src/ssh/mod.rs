//! `distd ssh`: host patterns (the launcher itself comes with the ssh issue).

pub mod pattern;
