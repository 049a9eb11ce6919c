//! Cutting a graph file's text into pieces of consecutive `[[task]]` tables, so that each piece
//! can be parsed on its own and the parser's document tree never holds the whole file.
//!
//! It owns finding header lines: a line that is `[[task]]` (spaces, a comment and CRLF
//! allowed) outside any multi-line string. It never parses values and never decides whether
//! the file is valid: a cut it gets wrong leaves a piece that ends inside an unterminated
//! string or array, that piece does not parse, and the caller parses the whole text instead.
//! So a mistake here costs memory, never a different answer.

/// The pieces of `text`, in order: the first from the start of the text, every other starting
/// at a `[[task]]` header line, each (but the last) holding `tasks_per_piece` headers.
pub(super) fn pieces(text: &str, tasks_per_piece: usize) -> Pieces<'_> {
    Pieces {
        text,
        at: 0,
        tasks_per_piece: tasks_per_piece.max(1),
        inside: Inside::Nothing,
    }
}

/// A piece of a file's text.
pub(super) struct Piece<'t> {
    /// Where it starts in the text: toml's spans in the piece are counted from here.
    pub(super) base: usize,
    pub(super) text: &'t str,
    /// How many `[[task]]` headers it was seen to hold (there may be more, spelled otherwise).
    pub(super) headers: usize,
}

/// The iterator [`pieces`] returns.
pub(super) struct Pieces<'t> {
    text: &'t str,
    /// Where the next piece starts; `text.len()` when none is left.
    at: usize,
    /// Headers in each piece; a piece ends before the header that would be one too many.
    tasks_per_piece: usize,
    /// Where the scan stands at `at`: always outside any string, as every cut is at a header.
    inside: Inside,
}

impl<'t> Iterator for Pieces<'t> {
    type Item = Piece<'t>;

    fn next(&mut self) -> Option<Piece<'t>> {
        if self.at >= self.text.len() {
            return None;
        }
        let start = self.at;
        let mut headers = 0;
        let mut line_start = start;
        while line_start < self.text.len() {
            let line_end = self.text[line_start..]
                .find('\n')
                .map_or(self.text.len(), |i| line_start + i + 1);
            let line = &self.text.as_bytes()[line_start..line_end];
            if self.inside == Inside::Nothing && is_task_header(line) {
                if headers == self.tasks_per_piece {
                    self.at = line_start;
                    return Some(Piece {
                        base: start,
                        text: &self.text[start..line_start],
                        headers,
                    });
                }
                headers += 1;
            }
            self.inside = scan_line(line, self.inside);
            line_start = line_end;
        }
        self.at = self.text.len();
        Some(Piece {
            base: start,
            text: &self.text[start..],
            headers,
        })
    }
}

/// Whether the scan is inside a multi-line string at the start of a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Inside {
    /// Outside every string.
    Nothing,
    /// In a `"""` string, where backslash escapes apply.
    BasicString,
    /// In a `'''` string, where nothing is escaped.
    LiteralString,
}

/// Whether `line` (with its line end) is exactly a `[[task]]` header: spaces or tabs around
/// the brackets and the name, then nothing or a comment. Other spellings (`[["task"]]`) are
/// headers too but are not recognised; they only make a piece longer.
fn is_task_header(line: &[u8]) -> bool {
    let rest = skip_blanks(line);
    let Some(rest) = rest.strip_prefix(b"[[") else {
        return false;
    };
    let Some(rest) = skip_blanks(rest).strip_prefix(b"task") else {
        return false;
    };
    let Some(rest) = skip_blanks(rest).strip_prefix(b"]]") else {
        return false;
    };
    matches!(skip_blanks(rest), [] | [b'\n'] | [b'\r', b'\n'] | [b'#', ..])
}

fn skip_blanks(bytes: &[u8]) -> &[u8] {
    let blanks = bytes.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
    &bytes[blanks..]
}

/// Where the scan stands after `line`, given where it stood before: follows strings, both
/// kinds of multi-line string, and comments, which is all that can hide a `[[task]]` line.
fn scan_line(line: &[u8], mut inside: Inside) -> Inside {
    let mut i = 0;
    while i < line.len() {
        match inside {
            Inside::BasicString => match line[i] {
                // Skips the escaped character, so `\"""` does not close the string.
                b'\\' => i += 2,
                b'"' if line[i..].starts_with(b"\"\"\"") => {
                    i += closing_run(&line[i..], b'"');
                    inside = Inside::Nothing;
                }
                _ => i += 1,
            },
            Inside::LiteralString => {
                if line[i..].starts_with(b"'''") {
                    i += closing_run(&line[i..], b'\'');
                    inside = Inside::Nothing;
                } else {
                    i += 1;
                }
            }
            Inside::Nothing => match line[i] {
                b'#' => break,
                b'"' if line[i..].starts_with(b"\"\"\"") => {
                    i += 3;
                    inside = Inside::BasicString;
                }
                b'\'' if line[i..].starts_with(b"'''") => {
                    i += 3;
                    inside = Inside::LiteralString;
                }
                b'"' => i = end_of_basic(line, i + 1),
                b'\'' => {
                    i = line[i + 1..]
                        .iter()
                        .position(|&b| b == b'\'')
                        .map_or(line.len(), |p| i + p + 2)
                }
                _ => i += 1,
            },
        }
    }
    inside
}

/// How many bytes the closing delimiter at the start of `rest` takes: up to two quotes just
/// before the closing three belong to the string (`"""a""""` holds `a"`).
fn closing_run(rest: &[u8], quote: u8) -> usize {
    rest.iter().take_while(|&&b| b == quote).count().min(5)
}

/// Where a one-line basic string whose content starts at `from` ends (just past its closing
/// quote), or the line's end when it does not close on this line.
fn end_of_basic(line: &[u8], from: usize) -> usize {
    let mut i = from;
    while i < line.len() {
        match line[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    line.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut(text: &str, tasks_per_piece: usize) -> Vec<&str> {
        let found: Vec<Piece> = pieces(text, tasks_per_piece).collect();
        let mut expected_base = 0;
        for piece in &found {
            assert_eq!(piece.base, expected_base, "pieces are consecutive");
            assert!(piece.headers <= tasks_per_piece);
            expected_base += piece.text.len();
        }
        assert_eq!(expected_base, text.len(), "pieces cover the text");
        found.into_iter().map(|piece| piece.text).collect()
    }

    #[test]
    fn pieces_start_at_headers_and_hold_so_many_tasks() {
        let text = "[defaults]\nretries = 1\n[[task]]\nkey = \"a\"\n[[task]]\nkey = \"b\"\n[[task]]\nkey = \"c\"\n";
        assert_eq!(
            cut(text, 2),
            vec![
                "[defaults]\nretries = 1\n[[task]]\nkey = \"a\"\n[[task]]\nkey = \"b\"\n",
                "[[task]]\nkey = \"c\"\n"
            ]
        );
        assert_eq!(cut(text, 3), vec![text]);
        assert_eq!(cut(text, 1).len(), 3);
        assert!(cut("", 1).is_empty());
    }

    #[test]
    fn spaced_commented_and_crlf_headers_are_headers() {
        let text = "[[task]]\r\nkey = \"a\"\r\n  [[ task ]]  # second\r\nkey = \"b\"\r\n\t[[task]]\nkey = \"c\"";
        assert_eq!(
            cut(text, 1),
            vec![
                "[[task]]\r\nkey = \"a\"\r\n",
                "  [[ task ]]  # second\r\nkey = \"b\"\r\n",
                "\t[[task]]\nkey = \"c\""
            ]
        );
        for not_a_header in [
            "[[tasks]]",
            "[[task]] x",
            "[[task.env]]",
            "[task]",
            "# [[task]]",
            "key = \"[[task]]\"",
        ] {
            assert!(!is_task_header(not_a_header.as_bytes()), "{not_a_header}");
        }
    }

    #[test]
    fn a_header_inside_a_multi_line_string_is_not_a_header() {
        for (open, close) in [("\"\"\"", "\"\"\""), ("'''", "'''"), ("\"\"\"x", "\\\"\"\" \"\"\"\"\"")] {
            let text = format!("[[task]]\nargs = {open}\n[[task]]\n{close}\n[[task]]\nkey = \"b\"\n");
            let found = cut(&text, 1);
            assert_eq!(found.len(), 2, "{found:?}");
            assert_eq!(found[1], "[[task]]\nkey = \"b\"\n");
        }
        // A string that opens and closes on one line, or a quote in a comment, opens nothing.
        let text = "[[task]]\nargs = \"\"\"one line\"\"\" # '''\nshell = 'it'\n[[task]]\n";
        assert_eq!(cut(text, 1).len(), 2);
        // Quotes inside a one-line string do not open a multi-line one.
        let text = "[[task]]\nargs = \"say \\\"'''\\\"\"\nx = '\"\"\"'\n[[task]]\n";
        assert_eq!(cut(text, 1).len(), 2);
    }
}
