//! The program's per-CPU counters, summed over CPUs.

use agent_common::Counter;
use aya::maps::{Map, MapError, PerCpuArray};

/// Every counter with its total over all CPUs, in index order.
pub fn read(map: &Map) -> Result<Vec<(Counter, u64)>, MapError> {
    let arr: PerCpuArray<&aya::maps::MapData, u64> = PerCpuArray::try_from(map)?;
    Counter::ALL
        .iter()
        .map(|&c| Ok((c, arr.get(&(c as u32), 0)?.iter().sum())))
        .collect()
}
