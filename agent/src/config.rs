//! The `run` command's TOML config file (`--config FILE` or `XDP_AUDIT_CONFIG`).
//!
//! A key is a `run` flag without its dashes (`log-dir` or `log_dir`), a value is what the flag
//! takes: a string, a number, `true` for a switch, an array for a repeatable flag
//! (`iface`, `blocklist`, `allowlist`, which also answer to their plurals). The file becomes
//! flags placed before the command line's own, so a flag given on the command line wins over
//! the file and a repeatable one adds to it. Every value goes through the flag's own parser
//! here, so a mistake is reported as `FILE:LINE: key: reason` rather than as a flag the user
//! never typed.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{ArgAction, Command};
use serde::Deserialize as _;
use toml::de::{DeString, DeTable, DeValue, ValueDeserializer};
use toml::{Spanned, Value};

/// The environment variable naming a config file when `--config` is not given.
pub const CONFIG_ENV: &str = "XDP_AUDIT_CONFIG";

/// Why a config file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read: {cause}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause (in the message, so not named `source`: that would print it twice).
        cause: crate::store::fsutil::InputError,
    },
    /// An empty file (0 bytes): most likely cut short (a full disk, a copy interrupted), and
    /// run on, the agent would take every setting's default.
    #[error(
        "{path}: is empty (0 bytes): a config cut short? Give its settings, or a comment line \
         to run on the command line's flags alone"
    )]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// Not valid TOML, or not a table of settings.
    #[error("{path}:{line}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line of the problem.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A key that is no `run` flag, or a value the flag refuses.
    #[error("{path}:{line}: {key}: {message}")]
    Setting {
        /// The file.
        path: PathBuf,
        /// 1-based line of the key.
        line: usize,
        /// The key as written.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// `argv` with the settings of the `run` command's config file (if it names one) inserted
/// right after `run`. Any other command line is returned unchanged. `cli` is the whole
/// command line's definition, so global flags are told apart from the subcommand.
pub fn expand(argv: Vec<OsString>, cli: &Command) -> Result<Vec<OsString>, ConfigError> {
    let Some(run) = cli.find_subcommand("run") else {
        return Ok(argv);
    };
    let Some(at) = subcommand_at(&argv, cli).filter(|&i| argv[i] == "run") else {
        return Ok(argv);
    };
    let path = match config_flag(&argv[at + 1..]) {
        Some(p) => p,
        None => match std::env::var_os(CONFIG_ENV) {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => return Ok(argv),
        },
    };
    let text = crate::store::fsutil::read_input_text(&path, crate::store::fsutil::CONFIG_MAX)
        .map_err(|cause| ConfigError::Read {
            path: path.clone(),
            cause,
        })?;
    if text.is_empty() {
        return Err(ConfigError::Empty { path });
    }
    let settings = to_args(&path, &text, run)?;
    let mut out = argv;
    out.splice(at + 1..at + 1, settings);
    Ok(out)
}

/// Index of the subcommand: the first argument that is not a global flag or its value.
fn subcommand_at(argv: &[OsString], cli: &Command) -> Option<usize> {
    let takes_value = |a: &str| {
        cli.get_arguments().any(|arg| {
            arg.get_action().takes_values()
                && arg
                    .get_long()
                    .is_some_and(|l| a.strip_prefix("--") == Some(l))
        })
    };
    let mut i = 1;
    while i < argv.len() {
        let a = argv[i].to_string_lossy();
        if takes_value(&a) {
            i += 2;
        } else if a.starts_with('-') {
            i += 1;
        } else {
            return Some(i);
        }
    }
    None
}

/// The value of `--config` among the subcommand's arguments (`--config F` or `--config=F`;
/// the last one, as for every other flag).
fn config_flag(args: &[OsString]) -> Option<PathBuf> {
    let mut found = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--" {
            break;
        }
        if a == "--config" {
            found = it.next().map(PathBuf::from);
        } else if let Some(v) = a.as_encoded_bytes().strip_prefix(b"--config=") {
            // Bytes, not text: a path need not be UTF-8, and one that is not was skipped,
            // starting the agent on its built-in defaults.
            use std::os::unix::ffi::OsStrExt as _;
            found = Some(PathBuf::from(std::ffi::OsStr::from_bytes(v)));
        }
    }
    found
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The flag a config key stands for.
fn flag_name(key: &str) -> String {
    let k = key.replace('_', "-");
    match k.as_str() {
        "blocklists" => "blocklist".into(),
        "allowlists" => "allowlist".into(),
        "ifaces" | "interfaces" | "interface" => "iface".into(),
        _ => k,
    }
}

/// Tables of the config file and the prefix of their keys' flags: `[alerts]` `window = "5m"`
/// is `--alert-window 5m`.
const TABLES: [(&str, &str); 1] = [("alerts", "alert")];

/// Flags that make no sense in a config file.
const NOT_SETTINGS: [&str; 3] = ["config", "help", "version"];

/// A table's entries in file order, so the flags (and their errors) come in the order the
/// user wrote them.
fn in_file_order(table: DeTable<'_>) -> Vec<(Spanned<DeString<'_>>, Spanned<DeValue<'_>>)> {
    let mut entries: Vec<_> = table.into_iter().collect();
    entries.sort_by_key(|(k, _)| k.span().start);
    entries
}

/// The command-line arguments `text` (the contents of `path`) stands for.
pub fn to_args(path: &Path, text: &str, run: &Command) -> Result<Vec<OsString>, ConfigError> {
    let syntax = |e: toml::de::Error| ConfigError::Syntax {
        path: path.to_owned(),
        line: e.span().map_or(1, |s| line_of(text, s.start)),
        message: e.message().trim().to_owned(),
    };
    // Parsed with every key's span, a table's keys too: each setting names its own line.
    let doc = DeTable::parse(text).map_err(syntax)?.into_inner();
    // A value TOML cannot hold (an integer past 64 bits) is the key's error, named.
    let value = |v: Spanned<DeValue<'_>>, line: usize, key: &str| {
        Value::deserialize(ValueDeserializer::from(v)).map_err(|e| ConfigError::Setting {
            path: path.to_owned(),
            line,
            key: key.to_owned(),
            message: e.message().trim().to_owned(),
        })
    };
    let mut settings = Vec::new();
    for (key, v) in in_file_order(doc) {
        let line = line_of(text, key.span().start);
        let table = TABLES.iter().find(|(name, _)| key.get_ref() == name);
        match (table, v.into_inner()) {
            // A table's keys stand for its flags.
            (Some((name, prefix)), DeValue::Table(t)) => {
                for (k, v) in in_file_order(t) {
                    let flag = format!("{prefix}-{}", k.get_ref().replace('_', "-"));
                    let line = line_of(text, k.span().start);
                    let key = format!("{name}.{}", k.get_ref());
                    let v = value(v, line, &key)?;
                    settings.push((line, key, flag, Some(*prefix), v));
                }
            }
            (_, other) => {
                let key = key.get_ref().to_string();
                let v = value(Spanned::new(0..0, other), line, &key)?;
                let flag = flag_name(&key);
                settings.push((line, key, flag, None, v));
            }
        }
    }
    let mut out = Vec::new();
    // Where each flag that takes one value was set: `log-dir` and `log_dir` are one setting.
    let mut set_at: Vec<(String, String, usize)> = Vec::new();
    for (line, key, flag, table, value) in settings {
        let err = |message: String| ConfigError::Setting {
            path: path.to_owned(),
            line,
            key: key.clone(),
            message,
        };
        let arg = run
            .get_arguments()
            .find(|a| a.get_long() == Some(flag.as_str()))
            .filter(|_| !NOT_SETTINGS.contains(&flag.as_str()))
            .ok_or_else(|| {
                let keys = known_keys(run, table);
                // The key as its table writes it (`burst_hits` in `[alerts]`).
                let asked = table
                    .and_then(|t| flag.strip_prefix(t))
                    .map_or(flag.as_str(), |k| k.trim_start_matches('-'));
                let hint = nearest(asked, &keys)
                    .map_or(String::new(), |k| format!(" (did you mean `{k}`?)"));
                err(format!(
                    "not a setting{hint}; known: {}",
                    known(&keys, table)
                ))
            })?;
        if !matches!(arg.get_action(), ArgAction::Append) {
            if let Some((first, _, at)) = set_at.iter().find(|(_, f, _)| *f == flag) {
                return Err(err(format!("set already, as `{first}` on line {at}")));
            }
            set_at.push((key.clone(), flag.clone(), line));
        }
        let long = OsString::from(format!("--{flag}"));
        match arg.get_action() {
            ArgAction::SetTrue => match &value {
                Value::Boolean(true) => out.push(long),
                Value::Boolean(false) => {}
                v => return Err(err(format!("expected true or false, found {}", kind(v)))),
            },
            action => {
                let values = match value {
                    Value::Array(items) if matches!(action, ArgAction::Append) => items,
                    Value::Array(_) => {
                        return Err(err("takes one value, not an array".into()));
                    }
                    v => vec![v],
                };
                let takes_bool = arg
                    .get_possible_values()
                    .iter()
                    .any(|p| p.get_name() == "true");
                // A name or a path written as a bare number is a slip (`iface = 5`), not
                // a name: it would be read as the text "5" and fail far from its line.
                let takes_text = arg.get_value_names().is_some_and(|names| {
                    names.iter().any(|n| {
                        [
                            "FILE", "DIR", "URL", "NAME", "ID", "TEXT", "REGION", "PREFIX",
                        ]
                        .contains(&n.as_str())
                            || n.starts_with("IF")
                    })
                });
                for v in values {
                    if matches!(v, Value::Boolean(_)) && !takes_bool {
                        return Err(err(
                            "expected a string or an integer, found a boolean".into()
                        ));
                    }
                    if matches!(v, Value::Integer(_)) && takes_text {
                        return Err(err("expected a string (in quotes), found an integer".into()));
                    }
                    let s = scalar(&v).map_err(&err)?;
                    // `--flag=value` in one argument: a value that starts with `-` (a
                    // negative number) would otherwise be read as a flag of its own.
                    let pair = OsString::from(format!("--{flag}={s}"));
                    // The flag alone in a command of its own: its parser, none of the
                    // other flags' requirements.
                    Command::new("run")
                        .no_binary_name(true)
                        .arg(arg.clone().required(false))
                        .try_get_matches_from([pair.as_os_str()])
                        .map_err(|e| err(clap_reason(&e)))?;
                    out.push(pair);
                }
            }
        }
    }
    Ok(out)
}

/// A TOML value as the text a flag would be given.
fn scalar(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Integer(i) => Ok(i.to_string()),
        Value::Boolean(b) => Ok(b.to_string()),
        other => Err(format!(
            "expected a string or an integer, found {}",
            kind(other)
        )),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date-time",
        Value::Array(_) => "an array",
        Value::Table(_) => "a table",
    }
}

/// Of `keys`, the one `asked` most likely meant: at most two edits away (one for a short
/// key), the nearest.
fn nearest<'a>(asked: &str, keys: &[&'a str]) -> Option<&'a str> {
    /// Edits (insert, delete, substitute) from `a` to `b`.
    fn distance(a: &[u8], b: &[u8]) -> usize {
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.iter().enumerate() {
            let mut last = row[0];
            row[0] = i + 1;
            for (j, cb) in b.iter().enumerate() {
                let next = (row[j + 1] + 1)
                    .min(row[j] + 1)
                    .min(last + usize::from(ca != cb));
                last = row[j + 1];
                row[j + 1] = next;
            }
        }
        row[b.len()]
    }
    let most = if asked.len() <= 4 { 1 } else { 2 };
    (keys.iter())
        .map(|k| (distance(asked.as_bytes(), k.as_bytes()), *k))
        .filter(|(d, _)| *d <= most)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// The keys a config file may use at the top (every flag), or in the table of the flags
/// `table`-* (without the prefix), sorted.
fn known_keys<'a>(run: &'a Command, table: Option<&str>) -> Vec<&'a str> {
    fn in_table(l: &str) -> Option<(&'static str, &str)> {
        TABLES
            .iter()
            .find_map(|(_, p)| l.strip_prefix(p)?.strip_prefix('-').map(|k| (*p, k)))
    }
    let mut keys: Vec<&str> = run
        .get_arguments()
        .filter_map(|a| a.get_long())
        .filter(|l| !NOT_SETTINGS.contains(l))
        .filter_map(|l| match (in_table(l), table) {
            (Some((p, k)), Some(t)) if p == t => Some(k),
            (_, None) => Some(l),
            _ => None,
        })
        .collect();
    keys.sort_unstable();
    keys
}

/// [`known_keys`] as a config error lists them, with the tables at the top.
fn known(keys: &[&str], table: Option<&str>) -> String {
    let mut text = keys.join(", ");
    if table.is_none() {
        for (name, _) in TABLES {
            text.push_str(&format!(", [{name}]"));
        }
    }
    text
}

/// The reason in a clap value error, without clap's framing (`error: invalid value ... for
/// '--flag'`, usage hints), which would name a flag the user did not type.
fn clap_reason(e: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue};
    let value = match e.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(v)) => format!("invalid value {v:?}"),
        _ => "invalid value".to_owned(),
    };
    // The source is the flag's own parser message (or clap's, e.g. for numbers, whose
    // "invalid digit found in string" is said plainly).
    match std::error::Error::source(e) {
        Some(src) => match src
            .downcast_ref::<std::num::ParseIntError>()
            .map(|p| p.kind())
        {
            Some(std::num::IntErrorKind::InvalidDigit) => {
                format!("{value}: not a whole number (digits only, no unit)")
            }
            Some(std::num::IntErrorKind::PosOverflow) => format!("{value}: too large"),
            Some(std::num::IntErrorKind::NegOverflow) => format!("{value}: too small"),
            _ => format!("{value}: {src}"),
        },
        None => {
            let shown = e.to_string();
            let first = shown.lines().next().unwrap_or_default();
            first.trim_start_matches("error: ").to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{value_parser, Arg};

    /// `--config=PATH` whose path is not UTF-8 is still the config (it was skipped).
    #[test]
    fn a_config_path_need_not_be_utf8() {
        use std::os::unix::ffi::OsStrExt as _;
        let raw = std::ffi::OsStr::from_bytes(b"--config=/etc/\xff.toml").to_owned();
        assert_eq!(
            config_flag(&[OsString::from("--log-dir"), OsString::from("x"), raw]),
            Some(PathBuf::from(std::ffi::OsStr::from_bytes(
                b"/etc/\xff.toml"
            )))
        );
        assert_eq!(
            config_flag(&[OsString::from("--config"), OsString::from("a.toml")]),
            Some(PathBuf::from("a.toml"))
        );
    }

    /// A command of `run`'s shape: repeatable flags, flags with parsers of their own (the
    /// binary's own `run` is tested end to end in `tests/cli.rs`).
    fn run_cmd() -> Command {
        let side = |s: &str| match s.rsplit_once(':') {
            Some((_, side)) if side != "lan" && side != "wan" => {
                Err(format!("{s:?}: side {side:?} is neither lan nor wan"))
            }
            _ => Ok(s.to_owned()),
        };
        let days = |s: &str| -> Result<u32, String> {
            let n: u32 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
            crate::store::retention::check_days(n).map_err(|e| e.to_string())
        };
        Command::new("run")
            .arg(Arg::new("config").long("config"))
            .arg(
                Arg::new("iface")
                    .long("iface")
                    .value_name("IF[:lan|wan]")
                    .action(ArgAction::Append)
                    .value_parser(side),
            )
            .arg(Arg::new("log-dir").long("log-dir").value_name("DIR"))
            .arg(
                Arg::new("blocklist")
                    .long("blocklist")
                    .action(ArgAction::Append),
            )
            .arg(
                Arg::new("retention-days")
                    .long("retention-days")
                    .value_parser(days),
            )
            .arg(
                Arg::new("inactive-timeout")
                    .long("inactive-timeout")
                    .value_parser(crate::span::parse),
            )
            .arg(
                Arg::new("flow-table-size")
                    .long("flow-table-size")
                    .value_parser(value_parser!(u32)),
            )
            .arg(Arg::new("switch").long("switch").action(ArgAction::SetTrue))
            .arg(Arg::new("alert-webhook").long("alert-webhook"))
            .arg(
                Arg::new("alert-burst-hits")
                    .long("alert-burst-hits")
                    .value_parser(value_parser!(u64)),
            )
    }

    /// The command line's shape: a global flag with a value, `run`, another command.
    fn cli() -> Command {
        Command::new("xdp-audit")
            .arg(clap::Arg::new("log").long("log").global(true))
            .subcommand(run_cmd())
            .subcommand(Command::new("query").arg(clap::Arg::new("config").long("config")))
    }

    fn args(text: &str) -> Result<Vec<String>, ConfigError> {
        to_args(Path::new("agent.toml"), text, &run_cmd())
            .map(|v| v.into_iter().map(|s| s.to_string_lossy().into()).collect())
    }

    #[test]
    fn settings_become_flags_in_file_order() {
        let a = args(
            "# comment\niface = [\"eth1:lan\", \"eth0:wan\"]\nlog_dir = \"/var/log/x\"\n\
             retention-days = 365\nblocklists = [\"/etc/a.list\"]\ninactive-timeout = 60\n",
        )
        .expect("valid");
        assert_eq!(
            a,
            [
                "--iface=eth1:lan",
                "--iface=eth0:wan",
                "--log-dir=/var/log/x",
                "--retention-days=365",
                "--blocklist=/etc/a.list",
                "--inactive-timeout=60"
            ]
        );
    }

    #[test]
    fn a_name_or_path_written_as_a_number_is_named_at_its_line() {
        for (text, key, line) in [
            ("log_dir = \"/x\"\niface = 5\n", "iface", 2),
            ("iface = [\"eth0\", 7]\n", "iface", 1),
            ("log-dir = 7\n", "log-dir", 1),
        ] {
            match args(text) {
                Err(ConfigError::Setting {
                    line: l,
                    key: k,
                    message,
                    ..
                }) => {
                    assert_eq!((l, k.as_str()), (line, key), "{text}");
                    assert!(message.contains("found an integer"), "{message}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
        // Numbers stay numbers where a flag takes one.
        assert!(args("flow-table-size = 5\n").is_ok());
    }

    #[test]
    fn the_alerts_table_becomes_alert_flags_and_names_its_bad_keys() {
        let a = args(
            "log_dir = \"/var/log/x\"\n[alerts]\nwebhook = \"http://127.0.0.1:9/h\"\nburst_hits = 5\n",
        )
        .expect("valid");
        assert_eq!(
            a,
            [
                "--log-dir=/var/log/x",
                "--alert-webhook=http://127.0.0.1:9/h",
                "--alert-burst-hits=5"
            ]
        );
        // A table's key is reported at its own line, not at the table's header.
        let (line, key, msg) = setting_error("[alerts]\nburst_hits = \"many\"\n");
        assert_eq!((line, key.as_str()), (2, "alerts.burst_hits"), "{msg}");
        let (line, key, msg) = setting_error(
            "log_dir = \"/x\"\n[alerts]\n# why\nwebhook = \"h\"\n\nburst_hits = \"x\"\n",
        );
        assert_eq!((line, key.as_str()), (6, "alerts.burst_hits"), "{msg}");
        let (line, key, _) = setting_error("alerts = { webhook = \"h\", windo = 1 }\n");
        assert_eq!((line, key.as_str()), (1, "alerts.windo"));
        let (_, key, msg) = setting_error("[alerts]\nwindo = \"5m\"\n");
        assert_eq!(key, "alerts.windo");
        assert!(msg.contains("not a setting"), "{msg}");
        // A negative number is the flag's value, not a flag of its own.
        let (line, key, msg) = setting_error("log_dir = \"/x\"\nretention-days = -5\n");
        assert_eq!((line, key.as_str()), (2, "retention-days"), "{msg}");
        assert!(
            msg.contains("-5") && !msg.contains("unexpected argument"),
            "{msg}"
        );
    }

    fn setting_error(text: &str) -> (usize, String, String) {
        match args(text) {
            Err(ConfigError::Setting {
                line, key, message, ..
            }) => (line, key, message),
            other => panic!("expected a setting error for {text:?}, got {other:?}"),
        }
    }

    #[test]
    fn an_unknown_key_is_named_with_its_line_and_the_known_keys() {
        let (line, key, msg) = setting_error("iface = [\"eth0\"]\n\nblocklsit = \"a\"\n");
        assert_eq!((line, key.as_str()), (3, "blocklsit"));
        assert!(
            msg.contains("blocklist") && msg.contains("log-dir"),
            "{msg}"
        );
        let (line, key, _) = setting_error("config = \"other.toml\"\n");
        assert_eq!((line, key.as_str()), (1, "config"));
        // A near miss is named, in a table too; a key far from every one is not.
        let (_, _, msg) = setting_error("retension-days = 90\n");
        assert!(msg.contains("(did you mean `retention-days`?)"), "{msg}");
        let (_, _, msg) = setting_error("[alerts]\nburst_hit = 5\n");
        assert!(msg.contains("(did you mean `burst-hits`?)"), "{msg}");
        let (_, _, msg) = setting_error("colour = \"blue\"\n");
        assert!(!msg.contains("did you mean"), "{msg}");
    }

    #[test]
    fn a_value_the_flag_refuses_is_reported_with_the_flags_own_reason() {
        let (line, key, msg) = setting_error("iface = \"eth0\"\nretention-days = 30\n");
        assert_eq!((line, key.as_str()), (2, "retention-days"));
        assert!(msg.contains("90"), "names the legal floor: {msg}");
        let (line, key, msg) = setting_error("retention-days = 106752\n");
        assert_eq!((line, key.as_str()), (1, "retention-days"));
        assert!(msg.contains("36500"), "names the maximum: {msg}");
        let (line, _, msg) = setting_error("inactive-timeout = \"soon\"\n");
        assert_eq!(line, 1);
        assert!(msg.contains("soon"), "{msg}");
        let (_, _, msg) = setting_error("iface = \"eth0:dmz\"\n");
        assert!(msg.contains("dmz"), "{msg}");
        let (_, _, msg) = setting_error("flow-table-size = \"many\"\n");
        assert!(
            msg.contains("many") && msg.contains("not a whole number"),
            "{msg}"
        );
    }

    #[test]
    fn wrong_shapes_are_refused() {
        let (_, _, msg) = setting_error("log-dir = [\"/a\", \"/b\"]\n");
        assert!(msg.contains("not an array"), "{msg}");
        let (_, _, msg) = setting_error("switch = \"yes\"\n");
        assert!(msg.contains("true or false"), "{msg}");
        let (_, _, msg) = setting_error("retention-days = 90.5\n");
        assert!(msg.contains("float"), "{msg}");
        let (_, _, msg) = setting_error("[store]\nlog-dir = \"/a\"\n");
        assert!(
            msg.contains("table") || msg.contains("not a setting"),
            "{msg}"
        );
    }

    /// A switch's `true` is no path, an unknown key in a table lists that table's keys, an
    /// integer TOML cannot hold names its key, and one setting under two spellings (or at
    /// the top and in its table) is refused rather than the last one silently winning.
    #[test]
    fn config_mistakes_name_their_key() {
        let (line, key, msg) = setting_error("iface = [\"eth0\"]\nlog-dir = true\n");
        assert_eq!((line, key.as_str()), (2, "log-dir"));
        assert!(msg.contains("boolean"), "{msg}");
        let (_, key, msg) = setting_error("[alerts]\nwindo = \"5m\"\n");
        assert_eq!(key, "alerts.windo");
        assert!(
            msg.contains("webhook") && msg.contains("burst-hits") && !msg.contains("log-dir"),
            "the [alerts] keys, not the top's: {msg}"
        );
        let (_, _, msg) = setting_error("blocklsit = \"a\"\n");
        assert!(msg.contains("[alerts]") && msg.contains("log-dir"), "{msg}");
        let (line, key, msg) =
            setting_error("iface = [\"eth0\"]\nflow-table-size = 99999999999999999999\n");
        assert_eq!((line, key.as_str()), (2, "flow-table-size"), "{msg}");
        let (line, key, msg) = setting_error("log-dir = \"/a\"\n\nlog_dir = \"/b\"\n");
        assert_eq!((line, key.as_str()), (3, "log_dir"));
        assert!(msg.contains("`log-dir` on line 1"), "{msg}");
        let (_, key, _) =
            setting_error("alert-webhook = \"http://a\"\n[alerts]\nwebhook = \"http://b\"\n");
        assert_eq!(key, "alerts.webhook");
        // A repeatable flag adds up under both spellings.
        assert_eq!(
            args("blocklist = [\"/a\"]\nblocklists = [\"/b\"]\n").expect("valid"),
            ["--blocklist=/a", "--blocklist=/b"]
        );
    }

    #[test]
    fn broken_toml_names_the_line() {
        match args("iface = [\"eth0\"]\nlog-dir = \"/var/log\n") {
            Err(ConfigError::Syntax { line, .. }) => assert_eq!(line, 2),
            other => panic!("expected a syntax error, got {other:?}"),
        }
        match args("iface = \"a\"\niface = \"b\"\n") {
            Err(ConfigError::Syntax { line, message, .. }) => {
                assert_eq!(line, 2, "{message}");
            }
            other => panic!("a duplicate key is an error: {other:?}"),
        }
    }

    #[test]
    fn the_config_is_inserted_after_run_and_the_command_line_comes_last() {
        let tmp = crate::blocklist::tests::TempDir::new("config");
        let dir = tmp.0.clone();
        let file = dir.join("agent.toml");
        std::fs::write(&file, "retention-days = 365\n").expect("write config");
        let argv: Vec<OsString> = [
            "xdp-audit",
            "--log",
            "debug",
            "run",
            "--config",
            file.to_str().expect("utf-8 temp path"),
            "--retention-days",
            "400",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        let out = expand(argv.clone(), &cli()).expect("expand");
        assert_eq!(out[..4], argv[..4]);
        assert_eq!(out[4..5], [OsString::from("--retention-days=365")]);
        assert_eq!(out[5..], argv[4..], "the command line follows, so it wins");
        let query: Vec<OsString> = ["xdp-audit", "query", "--config", "x"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(expand(query.clone(), &cli()).expect("untouched"), query);
    }
}
