//! Moving slots between pools while clients keep working (pool mode, slot placement).
//!
//! A move (`[[migration.moves]]`) routes its slots to the destination pool at once; every
//! request first moves the keys it touches there (`touch`), and a background mover
//! (`mover`) copies the rest, big keys in bounded steps (`stepped`). When the source holds none of the slots' keys, the slot map is
//! switched for good in the config file. Phase changes hold the slots' requests until every
//! worker has settled what it sent by the older table.

pub mod touch;

mod controller;
pub mod fleet;
mod measure;
pub mod persist;
pub mod settle;
pub mod stepped;

pub use controller::Migrations;
pub use settle::Settle;
