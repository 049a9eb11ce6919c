//! Host patterns for `distd ssh`: parsing and expanding `user@node[01-16]:2222`-style
//! patterns (and hostfiles of them) into concrete SSH targets.
//!
//! This module owns the pattern syntax and nothing else: it never resolves a name, opens a
//! connection or runs `ssh`. Every size is checked before it is allocated: the number of
//! hosts a pattern expands to is computed from the parsed pattern (with saturating
//! arithmetic) and refused above a cap before any host name is built, and bracket nesting is
//! limited so that a hostile pattern cannot recurse deeply.
//!
//! Syntax, combinable within one pattern:
//! - targets: `host`, `host:port`, `user@host`, `user@host:port`; IPv6 in square brackets
//!   (`[::1]`, `user@[fe80::1]:2222`), or bare without a port (`::1`);
//! - shell braces, for when the shell did not expand them: `{a,b}`, `{1..4}`, `{01..10}`,
//!   `{a..c}`, nested `{a,b{1,2}}`; angle brackets are the same lists: `<1,2>`, `<1..4>`;
//! - Slurm ranges in square brackets: `node[01-16,20]`, padded to the lower bound's width;
//! - top-level commas separate patterns, so a Slurm node list such as
//!   `node[01-04],login1` can be passed as it is.

use std::collections::HashSet;
use std::fmt;
use std::net::Ipv6Addr;

/// How many hosts a pattern (or all the patterns of one call) may expand to by default.
pub const DEFAULT_HOST_CAP: usize = 65_536;

/// How deeply `{...}` and `<...>` lists may nest. Far beyond any real pattern; it exists so
/// that parsing, counting and expanding, which recurse on nesting, stay shallow.
const MAX_NESTING: usize = 32;

/// The longest `user@host:port` text an expansion may produce. Checked before expanding, so
/// that a long literal multiplied by many alternatives cannot allocate without bound.
const MAX_TARGET_LEN: usize = 1024;

/// The longest host name DNS allows.
const MAX_HOST_LEN: usize = 253;

/// One concrete SSH target.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostSpec {
    /// The login name given as `user@`; `None` leaves the choice to ssh and its config.
    pub user: Option<String>,
    /// The host to connect to: a lowercased name (ssh lowercases it too, so `NODE1` and
    /// `node1` are recognised as duplicates) or a canonical IPv6 address without brackets.
    pub host: String,
    /// The port given as `:port`; `None` leaves the choice to ssh and its config.
    pub port: Option<u16>,
}

impl fmt::Display for HostSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(user) = &self.user {
            write!(f, "{user}@")?;
        }
        match self.port {
            // Without brackets the port would read as the last group of the address.
            Some(port) if self.host.contains(':') => write!(f, "[{}]:{port}", self.host),
            Some(port) => write!(f, "{}:{port}", self.host),
            None => f.write_str(&self.host),
        }
    }
}

/// The hosts of several patterns, each once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expansion {
    /// Every distinct host, in the order it was first written.
    pub hosts: Vec<HostSpec>,
    /// Every host that was dropped because it had been seen already, in the order met, so
    /// that the caller can warn about a probably mistyped host list.
    pub duplicates: Vec<HostSpec>,
}

/// Why a host pattern was refused. Each message is one line that quotes the pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("host pattern \"\": empty pattern")]
    Empty,
    #[error("host pattern {pattern:?}: unclosed '{open}'")]
    Unclosed { pattern: String, open: char },
    #[error("host pattern {pattern:?}: unbalanced '{close}'")]
    Unbalanced { pattern: String, close: char },
    /// `list` names the list, e.g. `'{...}' list`.
    #[error("host pattern {pattern:?}: empty item in {list}")]
    EmptyListItem { pattern: String, list: &'static str },
    #[error("host pattern {pattern:?}: brackets nested more than {limit} deep")]
    TooDeep { pattern: String, limit: usize },
    #[error("host pattern {pattern:?}: range bound {bound:?} is not a number")]
    BadRangeBound { pattern: String, bound: String },
    #[error("host pattern {pattern:?}: range bound {bound:?} is too large")]
    RangeBoundTooLarge { pattern: String, bound: String },
    #[error("host pattern {pattern:?}: reversed range {lo}-{hi}")]
    ReversedRange { pattern: String, lo: String, hi: String },
    /// `range` is the range as written, with its brackets.
    #[error(
        "host pattern {pattern:?}: bad range {range:?} \
         (expected two numbers or two letters of the same case)"
    )]
    BadBraceRange { pattern: String, range: String },
    #[error("host pattern {pattern:?}: expands to more than {cap} hosts")]
    TooManyHosts { pattern: String, cap: usize },
    /// The pattern fits the cap alone, but not together with the patterns before it
    /// (counting the duplicates among them, which were expanded too).
    #[error(
        "host pattern {pattern:?}: expands to more than {cap} hosts \
         together with the patterns before it"
    )]
    TooManyHostsInTotal { pattern: String, cap: usize },
    #[error("host pattern {pattern:?}: expands to names longer than {limit} characters")]
    TooLong { pattern: String, limit: usize },
    /// `place` is where the character was found, e.g. "a host name" or "a user name".
    #[error(
        "host pattern {pattern:?}: character {ch:?} is not allowed in {place} \
         (use letters, digits, '.', '-' and '_')"
    )]
    BadChar {
        pattern: String,
        ch: char,
        place: &'static str,
    },
    /// ssh would read such a name as a command-line option.
    #[error("host pattern {pattern:?}: {place} may not start with '-'")]
    LeadingDash { pattern: String, place: &'static str },
    #[error("host pattern {pattern:?}: empty host")]
    EmptyHost { pattern: String },
    #[error("host pattern {pattern:?}: empty user name before '@'")]
    EmptyUser { pattern: String },
    #[error("host pattern {pattern:?}: host name {host:?} has an empty label")]
    EmptyLabel { pattern: String, host: String },
    #[error("host pattern {pattern:?}: a host name is longer than {limit} characters")]
    HostTooLong { pattern: String, limit: usize },
    #[error("host pattern {pattern:?}: {address:?} is not an IPv6 address")]
    BadIpv6 { pattern: String, address: String },
    #[error("host pattern {pattern:?}: unexpected {rest:?} after ']' (expected ':PORT')")]
    AfterBracket { pattern: String, rest: String },
    #[error("host pattern {pattern:?}: bad port {port:?} (expected 1-65535)")]
    BadPort { pattern: String, port: String },
    /// A pattern of a hostfile; `origin` names the file, `line` counts from 1.
    #[error("{origin}:{line}: {error}")]
    InFile {
        origin: String,
        line: usize,
        error: Box<PatternError>,
    },
}

/// Expands one pattern into its hosts, in order, duplicates included, refusing patterns of
/// more than [`DEFAULT_HOST_CAP`] hosts.
pub fn expand_pattern(pattern: &str) -> Result<Vec<HostSpec>, PatternError> {
    expand_within(pattern, DEFAULT_HOST_CAP, DEFAULT_HOST_CAP)
}

/// Expands several patterns into distinct hosts in first-seen order.
///
/// `cap` bounds everything expanded, duplicates included, since they are built too.
pub fn expand_all<'a>(patterns: impl IntoIterator<Item = &'a str>, cap: usize) -> Result<Expansion, PatternError> {
    let mut collector = Collector::new(cap);
    for pattern in patterns {
        collector.add(pattern)?;
    }
    Ok(collector.finish())
}

/// Expands a hostfile: one pattern per line, blank lines and `#` comments (whole line or
/// trailing) ignored. Errors are prefixed with `origin:line`. `cap` is as for [`expand_all`].
pub fn parse_hostfile(text: &str, origin: &str, cap: usize) -> Result<Expansion, PatternError> {
    let mut collector = Collector::new(cap);
    for (index, line) in text.lines().enumerate() {
        let pattern = line.split('#').next().unwrap_or_default().trim();
        if pattern.is_empty() {
            continue;
        }
        collector.add(pattern).map_err(|error| PatternError::InFile {
            origin: origin.to_string(),
            line: index + 1,
            error: Box::new(error),
        })?;
    }
    Ok(collector.finish())
}

/// Accumulates the hosts of several patterns, dropping the ones seen before.
struct Collector {
    cap: usize,
    seen: HashSet<HostSpec>,
    expansion: Expansion,
}

impl Collector {
    fn new(cap: usize) -> Self {
        Collector {
            cap,
            seen: HashSet::new(),
            expansion: Expansion::default(),
        }
    }

    fn add(&mut self, pattern: &str) -> Result<(), PatternError> {
        let expanded = self.expansion.hosts.len() + self.expansion.duplicates.len();
        let remaining = self.cap.saturating_sub(expanded);
        for host in expand_within(pattern, self.cap, remaining)? {
            if self.seen.contains(&host) {
                self.expansion.duplicates.push(host);
            } else {
                self.seen.insert(host.clone());
                self.expansion.hosts.push(host);
            }
        }
        Ok(())
    }

    fn finish(self) -> Expansion {
        self.expansion
    }
}

/// Expands `pattern` if it makes at most `remaining` hosts (`cap` names the limit in the
/// error when the pattern alone is too big).
fn expand_within(pattern: &str, cap: usize, remaining: usize) -> Result<Vec<HostSpec>, PatternError> {
    if pattern.is_empty() {
        return Err(PatternError::Empty);
    }
    let alternatives = Parser::new(pattern).parse()?;
    let count = count_choice(&alternatives);
    if count > cap as u64 {
        return Err(PatternError::TooManyHosts {
            pattern: pattern.to_string(),
            cap,
        });
    }
    if count > remaining as u64 {
        return Err(PatternError::TooManyHostsInTotal {
            pattern: pattern.to_string(),
            cap,
        });
    }
    if max_len_choice(&alternatives) > MAX_TARGET_LEN {
        return Err(PatternError::TooLong {
            pattern: pattern.to_string(),
            limit: MAX_TARGET_LEN,
        });
    }
    let targets = expand_choice(&alternatives);
    debug_assert_eq!(targets.len() as u64, count, "expansion makes as many hosts as counted");
    targets.iter().map(|target| parse_target(pattern, target)).collect()
}

/// A parsed pattern piece; a pattern is a list of alternative sequences of these.
#[derive(Debug)]
enum Node {
    Literal(String),
    /// One of several sequences: a `{...}` or `<...>` list, or the items of a `[...]` range.
    Choice(Vec<Seq>),
    /// `first` to `last` inclusive, either direction, zero-padded to `width` digits.
    Numbers {
        first: u64,
        last: u64,
        width: usize,
    },
    /// ASCII letters `first` to `last` inclusive, either direction.
    Letters {
        first: u8,
        last: u8,
    },
}

type Seq = Vec<Node>;

/// What a list is called in an "empty item" error.
const TOP_LEVEL_LIST: &str = "comma-separated list";
const BRACE_LIST: &str = "'{...}' list";
const ANGLE_LIST: &str = "'<...>' list";
const SQUARE_LIST: &str = "'[...]' range list";

struct Parser<'p> {
    pattern: &'p str,
    chars: Vec<char>,
    pos: usize,
}

impl<'p> Parser<'p> {
    fn new(pattern: &'p str) -> Self {
        Parser {
            pattern,
            chars: pattern.chars().collect(),
            pos: 0,
        }
    }

    fn parse(mut self) -> Result<Vec<Seq>, PatternError> {
        self.list(0, None)
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn text(&self, from: usize, to: usize) -> String {
        self.chars[from..to].iter().collect()
    }

    /// Comma-separated sequences up to the bracket matching `open` (consumed), or to the end
    /// of the pattern at the top level (`open` is `None`).
    fn list(&mut self, depth: usize, open: Option<char>) -> Result<Vec<Seq>, PatternError> {
        let (close, name) = match open {
            None => (None, TOP_LEVEL_LIST),
            Some('<') => (Some('>'), ANGLE_LIST),
            Some(_) => (Some('}'), BRACE_LIST),
        };
        let mut items = Vec::new();
        loop {
            let item = self.seq(depth, close, true)?;
            if item.is_empty() {
                return Err(PatternError::EmptyListItem {
                    pattern: self.pattern.into(),
                    list: name,
                });
            }
            items.push(item);
            match (self.peek(), open) {
                (Some(','), _) => self.pos += 1,
                (None, None) => return Ok(items),
                (None, Some(open)) => {
                    return Err(PatternError::Unclosed {
                        pattern: self.pattern.into(),
                        open,
                    });
                }
                (Some(found), _) => {
                    debug_assert_eq!(
                        Some(found),
                        close,
                        "a sequence stops only at ',', its closer or the end"
                    );
                    self.pos += 1;
                    return Ok(items);
                }
            }
        }
    }

    /// A sequence up to (not including) `close`, a `,` when `commas` separate items, or the end.
    fn seq(&mut self, depth: usize, close: Option<char>, commas: bool) -> Result<Seq, PatternError> {
        let mut seq = Vec::new();
        let mut literal = String::new();
        while let Some(c) = self.peek() {
            if (c == ',' && commas) || Some(c) == close {
                break;
            }
            match c {
                '{' | '<' => {
                    flush(&mut literal, &mut seq);
                    self.pos += 1;
                    seq.push(self.brace(depth + 1, c)?);
                }
                '[' => {
                    flush(&mut literal, &mut seq);
                    self.square(depth, &mut seq)?;
                }
                '}' | '>' | ']' => {
                    return Err(PatternError::Unbalanced {
                        pattern: self.pattern.into(),
                        close: c,
                    });
                }
                c if c.is_ascii_alphanumeric() || "._-@:%".contains(c) => {
                    literal.push(c);
                    self.pos += 1;
                }
                _ => {
                    return Err(PatternError::BadChar {
                        pattern: self.pattern.into(),
                        ch: c,
                        place: "a host pattern",
                    });
                }
            }
        }
        flush(&mut literal, &mut seq);
        Ok(seq)
    }

    /// A `{...}` or `<...>` group whose opener `open` was just consumed.
    fn brace(&mut self, depth: usize, open: char) -> Result<Node, PatternError> {
        if depth > MAX_NESTING {
            return Err(PatternError::TooDeep {
                pattern: self.pattern.into(),
                limit: MAX_NESTING,
            });
        }
        let close = if open == '<' { '>' } else { '}' };
        // As in bash, the group is a range only when all of it is `X..Y`; otherwise a list.
        let start = self.pos;
        let mut end = start;
        while self
            .chars
            .get(end)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '.')
        {
            end += 1;
        }
        let body = self.text(start, end);
        if self.chars.get(end) == Some(&close) && body.contains("..") {
            self.pos = end + 1;
            return self.brace_range(&body, open, close);
        }
        Ok(Node::Choice(self.list(depth, Some(open))?))
    }

    fn brace_range(&self, body: &str, open: char, close: char) -> Result<Node, PatternError> {
        let bad = || PatternError::BadBraceRange {
            pattern: self.pattern.into(),
            range: format!("{open}{body}{close}"),
        };
        let Some((lo, hi)) = body.split_once("..") else {
            return Err(bad());
        };
        let is_number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if is_number(lo) && is_number(hi) {
            // bash pads to the wider bound when either is written with a leading zero.
            let padded = |s: &str| s.len() > 1 && s.starts_with('0');
            let width = if padded(lo) || padded(hi) {
                lo.len().max(hi.len())
            } else {
                0
            };
            return Ok(Node::Numbers {
                first: self.number(lo)?,
                last: self.number(hi)?,
                width,
            });
        }
        match (lo.as_bytes(), hi.as_bytes()) {
            ([a], [b])
                if (a.is_ascii_lowercase() && b.is_ascii_lowercase())
                    || (a.is_ascii_uppercase() && b.is_ascii_uppercase()) =>
            {
                Ok(Node::Letters { first: *a, last: *b })
            }
            _ => Err(bad()),
        }
    }

    /// A `[...]` group at the current position: an IPv6 literal when it holds a colon (kept
    /// with its brackets for [`parse_target`]), else a Slurm range list.
    fn square(&mut self, depth: usize, seq: &mut Seq) -> Result<(), PatternError> {
        let open_at = self.pos;
        let Some(close_at) = self.chars[open_at..]
            .iter()
            .position(|c| *c == ']')
            .map(|i| open_at + i)
        else {
            return Err(PatternError::Unclosed {
                pattern: self.pattern.into(),
                open: '[',
            });
        };
        let body = &self.chars[open_at + 1..close_at];
        if body.contains(&':') {
            if body.contains(&'[') {
                return Err(PatternError::BadChar {
                    pattern: self.pattern.into(),
                    ch: '[',
                    place: "an IPv6 address",
                });
            }
            self.pos = open_at + 1;
            seq.push(Node::Literal("[".into()));
            seq.extend(self.seq(depth, Some(']'), false)?);
            seq.push(Node::Literal("]".into()));
            debug_assert_eq!(self.peek(), Some(']'), "an IPv6 literal stops only at its ']'");
            self.pos += 1;
            return Ok(());
        }
        let body = self.text(open_at + 1, close_at);
        self.pos = close_at + 1;
        let mut items = Vec::new();
        for item in body.split(',') {
            if item.is_empty() {
                return Err(PatternError::EmptyListItem {
                    pattern: self.pattern.into(),
                    list: SQUARE_LIST,
                });
            }
            let (lo, hi) = item.split_once('-').unwrap_or((item, item));
            let (first, last) = (self.slurm_bound(lo)?, self.slurm_bound(hi)?);
            if first > last {
                return Err(PatternError::ReversedRange {
                    pattern: self.pattern.into(),
                    lo: lo.into(),
                    hi: hi.into(),
                });
            }
            // Slurm pads every number to the written width of the lower bound.
            items.push(vec![Node::Numbers {
                first,
                last,
                width: lo.len(),
            }]);
        }
        seq.push(Node::Choice(items));
        Ok(())
    }

    fn slurm_bound(&self, bound: &str) -> Result<u64, PatternError> {
        if bound.is_empty() || !bound.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PatternError::BadRangeBound {
                pattern: self.pattern.into(),
                bound: bound.into(),
            });
        }
        self.number(bound)
    }

    /// Parses a string of ASCII digits.
    fn number(&self, digits: &str) -> Result<u64, PatternError> {
        digits.parse().map_err(|_| PatternError::RangeBoundTooLarge {
            pattern: self.pattern.into(),
            bound: digits.into(),
        })
    }
}

fn flush(literal: &mut String, seq: &mut Seq) {
    if !literal.is_empty() {
        seq.push(Node::Literal(std::mem::take(literal)));
    }
}

// Counting, measuring and expanding recurse once per nesting level, which the parser has
// limited to MAX_NESTING.

fn count_choice(alternatives: &[Seq]) -> u64 {
    alternatives
        .iter()
        .fold(0, |sum, seq| sum.saturating_add(count_seq(seq)))
}

fn count_seq(seq: &[Node]) -> u64 {
    seq.iter()
        .fold(1, |product, node| product.saturating_mul(count_node(node)))
}

fn count_node(node: &Node) -> u64 {
    match node {
        Node::Literal(_) => 1,
        Node::Choice(alternatives) => count_choice(alternatives),
        Node::Numbers { first, last, .. } => first.abs_diff(*last).saturating_add(1),
        Node::Letters { first, last } => u64::from(first.abs_diff(*last)) + 1,
    }
}

fn max_len_choice(alternatives: &[Seq]) -> usize {
    alternatives.iter().map(|seq| max_len_seq(seq)).max().unwrap_or(0)
}

fn max_len_seq(seq: &[Node]) -> usize {
    seq.iter().fold(0, |sum, node| sum.saturating_add(max_len_node(node)))
}

fn max_len_node(node: &Node) -> usize {
    match node {
        Node::Literal(text) => text.len(),
        Node::Choice(alternatives) => max_len_choice(alternatives),
        Node::Numbers { first, last, width } => (*width).max(first.max(last).to_string().len()),
        Node::Letters { .. } => 1,
    }
}

fn expand_choice(alternatives: &[Seq]) -> Vec<String> {
    alternatives.iter().flat_map(|seq| expand_seq(seq)).collect()
}

/// The cartesian product of the pieces, the leftmost varying slowest (`{a,b}{1,2}` gives
/// a1 a2 b1 b2, as in bash).
fn expand_seq(seq: &[Node]) -> Vec<String> {
    let mut texts = vec![String::new()];
    for node in seq {
        if let Node::Literal(literal) = node {
            texts.iter_mut().for_each(|text| text.push_str(literal));
            continue;
        }
        let pieces = expand_node(node);
        let mut longer = Vec::with_capacity(texts.len().saturating_mul(pieces.len()));
        for text in &texts {
            for piece in &pieces {
                longer.push(format!("{text}{piece}"));
            }
        }
        texts = longer;
    }
    texts
}

fn expand_node(node: &Node) -> Vec<String> {
    match node {
        Node::Literal(text) => vec![text.clone()],
        Node::Choice(alternatives) => expand_choice(alternatives),
        Node::Numbers { first, last, width } => {
            let format = |n: u64| format!("{n:0width$}");
            if first <= last {
                (*first..=*last).map(format).collect()
            } else {
                (*last..=*first).rev().map(format).collect()
            }
        }
        Node::Letters { first, last } => {
            let letters: Vec<String> = (*first.min(last)..=*first.max(last))
                .map(|b| char::from(b).to_string())
                .collect();
            if first <= last {
                letters
            } else {
                letters.into_iter().rev().collect()
            }
        }
    }
}

/// Splits one expanded `user@host:port` into a [`HostSpec`], validating each part.
fn parse_target(pattern: &str, target: &str) -> Result<HostSpec, PatternError> {
    let (user, rest) = match target.split_once('@') {
        Some((user, rest)) => (Some(user_name(pattern, user)?), rest),
        None => (None, target),
    };
    let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
        let Some((address, after)) = bracketed.split_once(']') else {
            return Err(PatternError::Unclosed {
                pattern: pattern.into(),
                open: '[',
            });
        };
        let port = if after.is_empty() {
            None
        } else if let Some(port) = after.strip_prefix(':') {
            Some(port_number(pattern, port)?)
        } else {
            return Err(PatternError::AfterBracket {
                pattern: pattern.into(),
                rest: after.into(),
            });
        };
        (ipv6_address(pattern, address)?, port)
    } else if rest.matches(':').count() > 1 {
        (ipv6_address(pattern, rest)?, None)
    } else if let Some((host, port)) = rest.split_once(':') {
        (host_name(pattern, host)?, Some(port_number(pattern, port)?))
    } else {
        (host_name(pattern, rest)?, None)
    };
    Ok(HostSpec { user, host, port })
}

fn user_name(pattern: &str, user: &str) -> Result<String, PatternError> {
    if user.is_empty() {
        return Err(PatternError::EmptyUser {
            pattern: pattern.into(),
        });
    }
    check_name_chars(pattern, user, "a user name")?;
    Ok(user.to_string())
}

/// A validated, lowercased host name.
fn host_name(pattern: &str, host: &str) -> Result<String, PatternError> {
    if host.is_empty() {
        return Err(PatternError::EmptyHost {
            pattern: pattern.into(),
        });
    }
    if host.len() > MAX_HOST_LEN {
        return Err(PatternError::HostTooLong {
            pattern: pattern.into(),
            limit: MAX_HOST_LEN,
        });
    }
    check_name_chars(pattern, host, "a host name")?;
    // A trailing dot (an absolute name) is fine; `{1..3,7}` written for `1 2 3 7` is not.
    if host.starts_with('.') || host.contains("..") {
        return Err(PatternError::EmptyLabel {
            pattern: pattern.into(),
            host: host.into(),
        });
    }
    Ok(host.to_ascii_lowercase())
}

fn check_name_chars(pattern: &str, name: &str, place: &'static str) -> Result<(), PatternError> {
    if let Some(ch) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._-".contains(*c)))
    {
        return Err(PatternError::BadChar {
            pattern: pattern.into(),
            ch,
            place,
        });
    }
    if name.starts_with('-') {
        return Err(PatternError::LeadingDash {
            pattern: pattern.into(),
            place,
        });
    }
    Ok(())
}

/// A validated IPv6 address (with an optional `%zone`) in canonical form, so that two
/// spellings of one address are recognised as duplicates.
fn ipv6_address(pattern: &str, text: &str) -> Result<String, PatternError> {
    let bad = || PatternError::BadIpv6 {
        pattern: pattern.into(),
        address: text.into(),
    };
    let (address, zone) = match text.split_once('%') {
        Some((address, zone)) => (address, Some(zone)),
        None => (text, None),
    };
    let address: Ipv6Addr = address.parse().map_err(|_| bad())?;
    match zone {
        None => Ok(address.to_string()),
        Some(zone) if !zone.is_empty() && zone.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) => {
            Ok(format!("{address}%{zone}"))
        }
        Some(_) => Err(bad()),
    }
}

fn port_number(pattern: &str, port: &str) -> Result<u16, PatternError> {
    let bad = || PatternError::BadPort {
        pattern: pattern.into(),
        port: port.into(),
    };
    // Checked by hand: `str::parse` would also accept a leading '+'.
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(bad()),
        Ok(port) => Ok(port),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// What a user sees: the expanded hosts as they would be printed.
    fn shown(pattern: &str) -> Vec<String> {
        match expand_pattern(pattern) {
            Ok(hosts) => hosts.iter().map(ToString::to_string).collect(),
            Err(e) => panic!("{pattern:?} should expand, got: {e}"),
        }
    }

    fn error(pattern: &str) -> String {
        match expand_pattern(pattern) {
            Ok(hosts) => panic!("{pattern:?} should fail, expanded to {hosts:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn spec(user: Option<&str>, host: &str, port: Option<u16>) -> HostSpec {
        HostSpec {
            user: user.map(String::from),
            host: host.into(),
            port,
        }
    }

    #[test]
    fn plain_targets_keep_user_and_port() {
        assert_eq!(expand_pattern("node1").ok(), Some(vec![spec(None, "node1", None)]));
        assert_eq!(
            expand_pattern("node1:2222").ok(),
            Some(vec![spec(None, "node1", Some(2222))])
        );
        assert_eq!(
            expand_pattern("alice@node1").ok(),
            Some(vec![spec(Some("alice"), "node1", None)])
        );
        assert_eq!(
            expand_pattern("alice@node1.example.org:22").ok(),
            Some(vec![spec(Some("alice"), "node1.example.org", Some(22))])
        );
        assert_eq!(shown("10.0.0.1:65535"), ["10.0.0.1:65535"]);
        assert_eq!(shown("a_b-c.example.org."), ["a_b-c.example.org."]);
    }

    #[test]
    fn host_names_are_lowercased_but_user_names_are_not() {
        assert_eq!(shown("Alice@NODE1.Example.ORG"), ["Alice@node1.example.org"]);
    }

    #[test]
    fn ipv6_literals() {
        assert_eq!(expand_pattern("[::1]").ok(), Some(vec![spec(None, "::1", None)]));
        assert_eq!(
            expand_pattern("[fe80::1]:2222").ok(),
            Some(vec![spec(None, "fe80::1", Some(2222))])
        );
        assert_eq!(
            expand_pattern("user@[::1]:22").ok(),
            Some(vec![spec(Some("user"), "::1", Some(22))])
        );
        // Bare, more than one colon: a host without a port.
        assert_eq!(expand_pattern("::1").ok(), Some(vec![spec(None, "::1", None)]));
        assert_eq!(shown("root@fe80::1"), ["root@fe80::1"]);
        // Shown in brackets only when a port follows.
        assert_eq!(shown("[fe80::1]:2222"), ["[fe80::1]:2222"]);
        assert_eq!(shown("[fe80::1]"), ["fe80::1"]);
        // Canonical form, so that spellings of one address compare equal.
        assert_eq!(shown("[FE80:0:0::0001]"), ["fe80::1"]);
        assert_eq!(shown("[fe80::1%eth0]:22"), ["[fe80::1%eth0]:22"]);
        assert_eq!(shown("[::ffff:10.0.0.1]"), ["::ffff:10.0.0.1"]);
    }

    #[test]
    fn braces_inside_an_ipv6_literal_expand() {
        assert_eq!(shown("[fe80::{1,2}]:22"), ["[fe80::1]:22", "[fe80::2]:22"]);
        assert_eq!(shown("{[::1],[::2]}:22"), ["[::1]:22", "[::2]:22"]);
    }

    #[test]
    fn brace_lists_and_ranges() {
        assert_eq!(
            shown("192.168.0.{1,2,3,4}"),
            ["192.168.0.1", "192.168.0.2", "192.168.0.3", "192.168.0.4"]
        );
        assert_eq!(shown("node{1..4}"), ["node1", "node2", "node3", "node4"]);
        assert_eq!(shown("node{a}"), ["nodea"]);
        assert_eq!(shown("{a,b}{1..2}"), ["a1", "a2", "b1", "b2"]);
        assert_eq!(shown("{a,b{1,2}}"), ["a", "b1", "b2"]);
        assert_eq!(shown("x{a,b{1,{c,d}}}y"), ["xay", "xb1y", "xbcy", "xbdy"]);
    }

    #[test]
    fn brace_ranges_pad_like_bash() {
        assert_eq!(shown("node{01..03}"), ["node01", "node02", "node03"]);
        assert_eq!(shown("node{08..10}"), ["node08", "node09", "node10"]);
        // Either bound with a leading zero pads to the wider bound.
        assert_eq!(shown("n{1..003}"), ["n001", "n002", "n003"]);
        assert_eq!(
            shown("n{01..100}").get(..2),
            Some(&["n001".to_string(), "n002".to_string()][..])
        );
        assert_eq!(shown("n{0..2}"), ["n0", "n1", "n2"]);
        assert_eq!(shown("n{9..11}"), ["n9", "n10", "n11"]);
    }

    #[test]
    fn brace_ranges_run_backwards_and_over_letters_like_bash() {
        assert_eq!(shown("n{3..1}"), ["n3", "n2", "n1"]);
        assert_eq!(shown("rack{a..c}"), ["racka", "rackb", "rackc"]);
        assert_eq!(shown("rack{C..A}"), ["rackc", "rackb", "racka"]);
        assert_eq!(shown("{a..b}{1..2}"), ["a1", "a2", "b1", "b2"]);
    }

    #[test]
    fn angle_brackets_are_brace_lists() {
        assert_eq!(
            shown("192.168.0.<1,2,3,4>"),
            ["192.168.0.1", "192.168.0.2", "192.168.0.3", "192.168.0.4"]
        );
        assert_eq!(shown("node<1..4>"), ["node1", "node2", "node3", "node4"]);
        assert_eq!(shown("n<a,{b,c}>"), ["na", "nb", "nc"]);
    }

    #[test]
    fn slurm_ranges() {
        assert_eq!(shown("node[1-3]"), ["node1", "node2", "node3"]);
        assert_eq!(shown("node[7]"), ["node7"]);
        let hosts = shown("node[01-16,20].rack[1-2]");
        assert_eq!(hosts.len(), 34);
        assert_eq!(hosts[..3], ["node01.rack1", "node01.rack2", "node02.rack1"]);
        assert_eq!(hosts[hosts.len() - 2..], ["node20.rack1", "node20.rack2"]);
        // Padding comes from the written width of the lower bound, as in Slurm.
        assert_eq!(shown("n[008-011]"), ["n008", "n009", "n010", "n011"]);
        assert_eq!(shown("n[9-10]"), ["n9", "n10"]);
        assert_eq!(shown("n[1,03,5-6]"), ["n1", "n03", "n5", "n6"]);
    }

    #[test]
    fn a_slurm_node_list_is_one_pattern() {
        assert_eq!(
            shown("node[1-2],login1,gpu[01-02]"),
            ["node1", "node2", "login1", "gpu01", "gpu02"]
        );
    }

    #[test]
    fn syntaxes_combine_with_user_and_port() {
        assert_eq!(
            shown("{alice,bob}@node[1-2].<x,y>:{22,2222}").get(..5),
            Some(
                &[
                    "alice@node1.x:22".to_string(),
                    "alice@node1.x:2222".into(),
                    "alice@node1.y:22".into(),
                    "alice@node1.y:2222".into(),
                    "alice@node2.x:22".into(),
                ][..]
            )
        );
        assert_eq!(shown("{alice,bob}@node[1-2].<x,y>:{22,2222}").len(), 16);
        assert_eq!(
            shown("root@10.0.{0..1}.[1-2]:2222"),
            [
                "root@10.0.0.1:2222",
                "root@10.0.0.2:2222",
                "root@10.0.1.1:2222",
                "root@10.0.1.2:2222"
            ]
        );
    }

    #[test]
    fn expand_pattern_keeps_duplicates() {
        assert_eq!(shown("{a,a}"), ["a", "a"]);
    }

    #[test]
    fn expand_all_drops_duplicates_and_reports_them() {
        let expansion = expand_all(["node[1-3]", "node2", "NODE1", "node4", "alice@node1", "node1:22"], 100);
        let Ok(Expansion { hosts, duplicates }) = expansion else {
            panic!("should expand: {expansion:?}")
        };
        let hosts: Vec<String> = hosts.iter().map(ToString::to_string).collect();
        let duplicates: Vec<String> = duplicates.iter().map(ToString::to_string).collect();
        assert_eq!(hosts, ["node1", "node2", "node3", "node4", "alice@node1", "node1:22"]);
        assert_eq!(duplicates, ["node2", "node1"]);
    }

    #[test]
    fn expand_all_of_nothing_is_empty() {
        assert_eq!(expand_all([], 10).ok(), Some(Expansion::default()));
    }

    #[test]
    fn expand_all_cap_counts_every_pattern() {
        assert_eq!(
            expand_all(["n[1-5]", "m[1-5]"], 10).map(|e| e.hosts.len()).ok(),
            Some(10)
        );
        let err = expand_all(["n[1-5]", "m[1-6]"], 10).map_err(|e| e.to_string());
        assert_eq!(
            err,
            Err(r#"host pattern "m[1-6]": expands to more than 10 hosts together with the patterns before it"#.into())
        );
        let err = expand_all(["n[1-11]"], 10).map_err(|e| e.to_string());
        assert_eq!(
            err,
            Err(r#"host pattern "n[1-11]": expands to more than 10 hosts"#.into())
        );
        // Duplicates were built too, so they count.
        assert!(expand_all(["n[1-6]", "n[1-6]"], 10).is_err());
    }

    #[test]
    fn a_gigantic_pattern_fails_at_once() {
        let started = Instant::now();
        assert_eq!(
            error("n[1-100000]x[1-100]"),
            r#"host pattern "n[1-100000]x[1-100]": expands to more than 65536 hosts"#
        );
        assert!(expand_pattern("n[0-999999]x[0-999999]").is_err());
        assert!(expand_pattern("{0..18446744073709551615}").is_err());
        assert!(expand_pattern("[0-18446744073709551615][0-18446744073709551615]").is_err());
        // 2^64 alternatives overflow a u64 product: the count saturates rather than wraps.
        assert!(expand_pattern(&"{a,b}".repeat(64)).is_err());
        assert!(expand_pattern(&"{a,b}".repeat(1000)).is_err());
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "took {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn exactly_the_cap_is_allowed() {
        assert_eq!(expand_pattern("n[1-65536]").map(|h| h.len()).ok(), Some(65_536));
        assert!(expand_pattern("n[0-65536]").is_err());
    }

    #[test]
    fn long_names_are_refused_before_expanding() {
        let pattern = format!("{}{}", "a".repeat(2000), "{a,b}".repeat(16));
        assert!(error(&pattern).ends_with(": expands to names longer than 1024 characters"));
        let host = "a".repeat(254);
        assert_eq!(
            error(&host),
            format!("host pattern {host:?}: a host name is longer than 253 characters")
        );
    }

    #[test]
    fn nesting_is_limited() {
        let ok = format!("{}a{}", "{".repeat(32), "}".repeat(32));
        assert_eq!(shown(&ok), ["a"]);
        let deep = format!("{}a{}", "{".repeat(33), "}".repeat(33));
        assert_eq!(
            error(&deep),
            format!("host pattern {deep:?}: brackets nested more than 32 deep")
        );
        // A hostile depth fails as quickly, without deep recursion.
        let hostile = "{<".repeat(500_000);
        assert!(error(&hostile).ends_with(": brackets nested more than 32 deep"));
    }

    #[test]
    fn error_messages() {
        let cases = [
            ("", r#"host pattern "": empty pattern"#),
            ("node[1-4", r#"host pattern "node[1-4": unclosed '['"#),
            ("node{1,2", r#"host pattern "node{1,2": unclosed '{'"#),
            ("node<1,2", r#"host pattern "node<1,2": unclosed '<'"#),
            ("node{1,<2}", r#"host pattern "node{1,<2}": unbalanced '}'"#),
            ("node1}", r#"host pattern "node1}": unbalanced '}'"#),
            ("node1]", r#"host pattern "node1]": unbalanced ']'"#),
            ("node1>", r#"host pattern "node1>": unbalanced '>'"#),
            ("node[5-1]", r#"host pattern "node[5-1]": reversed range 5-1"#),
            (
                "node[a-c]",
                r#"host pattern "node[a-c]": range bound "a" is not a number"#,
            ),
            (
                "node[1-c]",
                r#"host pattern "node[1-c]": range bound "c" is not a number"#,
            ),
            ("node[-3]", r#"host pattern "node[-3]": range bound "" is not a number"#),
            (
                "node[1-2-3]",
                r#"host pattern "node[1-2-3]": range bound "2-3" is not a number"#,
            ),
            (
                "n[1-99999999999999999999]",
                r#"host pattern "n[1-99999999999999999999]": range bound "99999999999999999999" is too large"#,
            ),
            ("{a,,b}", r#"host pattern "{a,,b}": empty item in '{...}' list"#),
            ("n{}", r#"host pattern "n{}": empty item in '{...}' list"#),
            ("n<a,>", r#"host pattern "n<a,>": empty item in '<...>' list"#),
            ("n[1,,2]", r#"host pattern "n[1,,2]": empty item in '[...]' range list"#),
            ("n[]", r#"host pattern "n[]": empty item in '[...]' range list"#),
            ("a,,b", r#"host pattern "a,,b": empty item in comma-separated list"#),
            (
                "n{1..a}",
                r#"host pattern "n{1..a}": bad range "{1..a}" (expected two numbers or two letters of the same case)"#,
            ),
            (
                "n<a..Z>",
                r#"host pattern "n<a..Z>": bad range "<a..Z>" (expected two numbers or two letters of the same case)"#,
            ),
            (
                "n{1..5..2}",
                r#"host pattern "n{1..5..2}": bad range "{1..5..2}" (expected two numbers or two letters of the same case)"#,
            ),
            ("host:0", r#"host pattern "host:0": bad port "0" (expected 1-65535)"#),
            (
                "host:99999",
                r#"host pattern "host:99999": bad port "99999" (expected 1-65535)"#,
            ),
            (
                "host:65536",
                r#"host pattern "host:65536": bad port "65536" (expected 1-65535)"#,
            ),
            ("host:x", r#"host pattern "host:x": bad port "x" (expected 1-65535)"#),
            ("host:", r#"host pattern "host:": bad port "" (expected 1-65535)"#),
            ("[::1]:", r#"host pattern "[::1]:": bad port "" (expected 1-65535)"#),
            (":22", r#"host pattern ":22": empty host"#),
            ("alice@", r#"host pattern "alice@": empty host"#),
            ("@node", r#"host pattern "@node": empty user name before '@'"#),
            (
                "my host",
                r#"host pattern "my host": character ' ' is not allowed in a host pattern (use letters, digits, '.', '-' and '_')"#,
            ),
            (
                "node\t1",
                r#"host pattern "node\t1": character '\t' is not allowed in a host pattern (use letters, digits, '.', '-' and '_')"#,
            ),
            (
                "a/b",
                r#"host pattern "a/b": character '/' is not allowed in a host pattern (use letters, digits, '.', '-' and '_')"#,
            ),
            (
                "a@b@c",
                r#"host pattern "a@b@c": character '@' is not allowed in a host name (use letters, digits, '.', '-' and '_')"#,
            ),
            (
                "a:b@c",
                r#"host pattern "a:b@c": character ':' is not allowed in a user name (use letters, digits, '.', '-' and '_')"#,
            ),
            (
                "node%1",
                r#"host pattern "node%1": character '%' is not allowed in a host name (use letters, digits, '.', '-' and '_')"#,
            ),
            (
                "-oProxyCommand",
                r#"host pattern "-oProxyCommand": a host name may not start with '-'"#,
            ),
            (
                "-l@node",
                r#"host pattern "-l@node": a user name may not start with '-'"#,
            ),
            (
                "node..x",
                r#"host pattern "node..x": host name "node..x" has an empty label"#,
            ),
            (".node", r#"host pattern ".node": host name ".node" has an empty label"#),
            (
                "[::1]x",
                r#"host pattern "[::1]x": unexpected "x" after ']' (expected ':PORT')"#,
            ),
            ("[::g]", r#"host pattern "[::g]": "::g" is not an IPv6 address"#),
            (
                "host:22:33",
                r#"host pattern "host:22:33": "host:22:33" is not an IPv6 address"#,
            ),
            (
                "[fe80::1%]",
                r#"host pattern "[fe80::1%]": "fe80::1%" is not an IPv6 address"#,
            ),
            (
                "[fe80::[1-2]]",
                r#"host pattern "[fe80::[1-2]]": character '[' is not allowed in an IPv6 address (use letters, digits, '.', '-' and '_')"#,
            ),
        ];
        for (pattern, message) in cases {
            assert_eq!(error(pattern), message, "for pattern {pattern:?}");
        }
    }

    #[test]
    fn every_error_is_one_line() {
        for pattern in ["a\nb", "n[1-\n", "x{\n}"] {
            assert!(!error(pattern).contains('\n'), "{pattern:?}: {}", error(pattern));
        }
    }

    #[test]
    fn hostfile_with_comments_and_blank_lines() {
        let text = "# the cluster\n\nnode[1-2]   # compute\n  login1  \r\n\t\nnode2\nalice@[::1]:22\n#node9\n";
        let expansion = parse_hostfile(text, "hosts.txt", DEFAULT_HOST_CAP);
        let Ok(Expansion { hosts, duplicates }) = expansion else {
            panic!("should parse: {expansion:?}")
        };
        let hosts: Vec<String> = hosts.iter().map(ToString::to_string).collect();
        assert_eq!(hosts, ["node1", "node2", "login1", "alice@[::1]:22"]);
        assert_eq!(duplicates, [spec(None, "node2", None)]);
    }

    #[test]
    fn hostfile_errors_name_the_line() {
        let text = "node1\n# fine so far\n\nnode[1-4\n";
        let err = parse_hostfile(text, "cluster.hosts", DEFAULT_HOST_CAP).map_err(|e| e.to_string());
        assert_eq!(
            err,
            Err(r#"cluster.hosts:4: host pattern "node[1-4": unclosed '['"#.into())
        );

        let err = parse_hostfile("node1 node2\n", "h", 10).map_err(|e| e.to_string());
        assert_eq!(
            err,
            Err(r#"h:1: host pattern "node1 node2": character ' ' is not allowed in a host pattern (use letters, digits, '.', '-' and '_')"#.into())
        );

        let err = parse_hostfile("n[1-6]\n\nm[1-6]\n", "h", 10).map_err(|e| e.to_string());
        assert_eq!(
            err,
            Err(
                r#"h:3: host pattern "m[1-6]": expands to more than 10 hosts together with the patterns before it"#
                    .into()
            )
        );
    }

    #[test]
    fn empty_hostfile_is_empty() {
        assert_eq!(
            parse_hostfile("# nothing\n\n", "h", 10).ok(),
            Some(Expansion::default())
        );
    }
}
