//! `blocklist check`: list files checked without a [`super::ListSet`] or the kernel.

use std::path::PathBuf;

use agent_common::domain::DomainKey;

use super::compile::compile_kind;
use super::error::{Diagnostic, Problem};
use super::ids::{IdAlloc, IdContext};
use super::parse::{LineStats, ParsedList};
use crate::store::fsutil::{read_input, TABLE_MAX};

/// The key `check` hashes domain rules with. Any key folds the same names (a collision
/// between two rule names is as unlikely under one key as under another), and nothing
/// hashed here reaches the kernel.
const CHECK_KEY: DomainKey = DomainKey {
    label: [0; 2],
    suffix: [0; 2],
};
use super::tables::{CompileStats, CompiledList};

/// The result of checking one file for `blocklist check`.
#[derive(Debug)]
pub struct FileCheck {
    /// The file.
    pub path: PathBuf,
    /// Line counts and what the file compiles into on its own, or every problem.
    pub result: Result<(LineStats, CompileStats), Vec<Diagnostic>>,
}

/// Checks files without a [`super::ListSet`] or the kernel (for `blocklist check`): each file on its
/// own, then all good files compiled together as one list (which folds across files).
pub fn check_files(paths: &[PathBuf]) -> (Vec<FileCheck>, CompileStats) {
    let mut parsed = Vec::new();
    let mut checks = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        let r = read_input(path, TABLE_MAX)
            .map_err(|e| {
                vec![Diagnostic {
                    path: path.clone(),
                    line: None,
                    problem: Problem::Read(e),
                }]
            })
            .and_then(|b| {
                ParsedList::parse(&b, &CHECK_KEY).map_err(|bad| Diagnostic::bad_lines(path, bad))
            });
        let result = r.map(|p| {
            let alone = compile_standalone([(i as u32, &p)].into_iter());
            let stats = p.stats;
            parsed.push((i as u32, p));
            (stats, alone)
        });
        checks.push(FileCheck {
            path: path.clone(),
            result,
        });
    }
    let total = compile_standalone(parsed.iter().map(|(i, p)| (*i, p)));
    (checks, total)
}

fn compile_standalone<'a>(
    files: impl Iterator<Item = (u32, &'a ParsedList)> + Clone,
) -> CompileStats {
    let mut ids = IdAlloc::default();
    let mut origins = Vec::new();
    let mut assigned = Vec::new();
    let mut ctx = IdContext {
        ids: &mut ids,
        origins: &mut origins,
        assigned: &mut assigned,
        log: None,
        refuse: &[],
    };
    compile_kind(files, &CompiledList::default(), &mut ctx)
        .0
        .stats
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocklist::tests::{write, TempDir};

    #[test]
    fn check_files_compiles_good_files_together() {
        let dir = TempDir::new("check");
        let a = dir.0.join("a.txt");
        let b = dir.0.join("b.txt");
        write(&a, "192.0.2.0/24\n");
        write(&b, "192.0.2.9\nexample.com\n");
        let (checks, total) = check_files(&[a, b, dir.0.join("missing")]);
        assert!(checks[0].result.is_ok() && checks[1].result.is_ok() && checks[2].result.is_err());
        assert_eq!(checks[1].result.as_ref().map(|r| r.1.covered).ok(), Some(0));
        assert_eq!(total.covered, 1);
        assert_eq!(total.kept(), 2);
    }
}
