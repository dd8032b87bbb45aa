//! The memory store passes the store contract.

use orchestrator_memory::MemoryStore;
use orchestrator_testkit::{Stores, store_contract_tests};

store_contract_tests!(async { Stores::from_one(MemoryStore::new()) });
