//! The program's per-CPU counters, summed over CPUs.

use agent_common::Counter;
use aya::maps::{Map, MapError, PerCpuArray};

/// Every counter with its total over all CPUs, in index order.
pub fn read(map: &Map) -> Result<Vec<(Counter, u64)>, MapError> {
    let arr: PerCpuArray<&aya::maps::MapData, u64> = PerCpuArray::try_from(map)?;
    Counter::ALL
        .iter()
        .map(|&c| Ok((c, total(&arr, c)?)))
        .collect()
}

/// One counter's total over all CPUs.
pub fn read_one(map: &Map, c: Counter) -> Result<u64, MapError> {
    total(&PerCpuArray::try_from(map)?, c)
}

fn total(arr: &PerCpuArray<&aya::maps::MapData, u64>, c: Counter) -> Result<u64, MapError> {
    Ok(arr.get(&(c as u32), 0)?.iter().sum())
}
