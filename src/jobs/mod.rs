//! jobs: Carnet's time-driven work, each the time-driven half of a feature, run outside any
//! request under its own context: the delivery of subscription notifications today;
//! reminders (vaccination, agenda), due notices and account deadlines land here
//! (docs/architecture.md). A job claims its work with a lease, so that two nodes never do
//! it twice.
//!
//! Must never: bypass the repository (and with it the access point and the trail).

pub mod delivery;
