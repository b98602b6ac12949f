//! Terminal text for the ladder and the list: display widths (an East Asian wide character
//! takes two columns, box-drawing characters one), truncation with `…`, and lines of
//! painted cells that render with ANSI colour or with no escape byte at all.

use runloop_proto::payloads::ParticipantKind;
use unicode_width::UnicodeWidthChar;

/// The second cell of a wide character (never printed).
const CONTINUATION: char = '\0';

/// What colour a cell is painted (closed). Colour is chosen by meaning here and mapped to
/// ANSI codes only when a line is rendered with colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Paint {
    Plain,
    /// A participant's colour: its column label and the arrows it sends.
    Kind(ParticipantKind),
    /// A participant the view does not list (no kind known).
    Unknown,
    /// Crossings answered with an error, and their `✗` and detail.
    Error,
    /// Margin headers and notes.
    Dim,
}

impl Paint {
    fn ansi(self) -> &'static str {
        match self {
            Paint::Plain => "",
            Paint::Kind(kind) => match kind {
                ParticipantKind::Cli => "\x1b[1m",
                ParticipantKind::Run => "\x1b[35m",
                ParticipantKind::Agent => "\x1b[36m",
                ParticipantKind::Broker => "\x1b[33m",
                ParticipantKind::Pog => "\x1b[34m",
                ParticipantKind::Gate => "\x1b[95m",
                ParticipantKind::Effects => "\x1b[32m",
                ParticipantKind::Kernel => "\x1b[90m",
            },
            Paint::Unknown => "\x1b[37m",
            Paint::Error => "\x1b[1;31m",
            Paint::Dim => "\x1b[2m",
        }
    }
}

const RESET: &str = "\x1b[0m";

/// Columns a character takes: 0 for control and zero-width characters.
fn char_width(c: char) -> usize {
    c.width().unwrap_or(0)
}

/// Columns a (cleaned) string takes.
pub(crate) fn width(s: &str) -> usize {
    s.chars().map(char_width).sum()
}

/// One line of text from data: control characters (newlines, tabs, escape bytes) become
/// spaces and zero-width characters are dropped, so every kept character takes one or two
/// columns and no input can smuggle an escape sequence into the output.
pub(crate) fn clean(s: &str) -> String {
    s.chars()
        .filter_map(|c| {
            if c.is_control() {
                Some(' ')
            } else if char_width(c) == 0 {
                None
            } else {
                Some(c)
            }
        })
        .collect()
}

/// `s` cut to at most `max` columns, ending in `…` when it was cut.
pub(crate) fn fit(s: &str, max: usize) -> String {
    if width(s) <= max {
        return s.to_owned();
    }
    if max == 0 {
        return String::new();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        let w = char_width(c);
        if used + w > max - 1 {
            break;
        }
        out.push(c);
        used += w;
    }
    out.push('…');
    out
}

/// `s` fitted to `w` columns and padded on the right (left-aligned).
pub(crate) fn pad_right(s: &str, w: usize) -> String {
    let s = fit(s, w);
    let pad = w - width(&s);
    format!("{s}{}", " ".repeat(pad))
}

/// `s` fitted to `w` columns and padded on the left (right-aligned).
pub(crate) fn pad_left(s: &str, w: usize) -> String {
    let s = fit(s, w);
    let pad = w - width(&s);
    format!("{}{s}", " ".repeat(pad))
}

#[derive(Debug, Clone, Copy)]
struct Cell {
    ch: char,
    paint: Paint,
}

const BLANK: Cell = Cell {
    ch: ' ',
    paint: Paint::Plain,
};

/// A line of cells, one per column.
#[derive(Debug, Clone, Default)]
pub(crate) struct Line {
    cells: Vec<Cell>,
}

impl Line {
    pub(crate) fn blank(w: usize) -> Line {
        Line {
            cells: vec![BLANK; w],
        }
    }

    pub(crate) fn width(&self) -> usize {
        self.cells.len()
    }

    /// Puts a one-column character at `x` (ignored past the end), blanking the other half
    /// of a wide character it overwrites.
    pub(crate) fn set(&mut self, x: usize, ch: char, paint: Paint) {
        if x >= self.cells.len() {
            return;
        }
        self.clear_halves(x);
        self.cells[x] = Cell { ch, paint };
    }

    fn clear_halves(&mut self, x: usize) {
        if self.cells[x].ch == CONTINUATION && x > 0 {
            self.cells[x - 1] = BLANK;
        }
        if x + 1 < self.cells.len() && self.cells[x + 1].ch == CONTINUATION {
            self.cells[x + 1] = BLANK;
        }
    }

    /// Writes cleaned text from `x`, stopping where a character no longer fits; returns
    /// the column after the last one written.
    pub(crate) fn put(&mut self, mut x: usize, text: &str, paint: Paint) -> usize {
        for c in text.chars() {
            match char_width(c) {
                0 => {}
                1 => {
                    if x >= self.cells.len() {
                        break;
                    }
                    self.set(x, c, paint);
                    x += 1;
                }
                _ => {
                    if x + 2 > self.cells.len() {
                        break;
                    }
                    self.set(x, c, paint);
                    self.set(x + 1, CONTINUATION, paint);
                    x += 2;
                }
            }
        }
        x
    }

    /// Appends cleaned text at the end.
    pub(crate) fn push_str(&mut self, text: &str, paint: Paint) {
        let at = self.cells.len();
        self.cells.resize(at + width(text), BLANK);
        self.put(at, text, paint);
    }

    /// Appends another line's cells.
    pub(crate) fn append(&mut self, other: &Line) {
        self.cells.extend_from_slice(&other.cells);
    }

    /// Cuts the line to at most `max` columns (a wide character cut in half is dropped).
    pub(crate) fn cut(&mut self, max: usize) {
        if self.cells.len() <= max {
            return;
        }
        self.cells.truncate(max);
        if let Some(last) = self.cells.last_mut()
            && char_width(last.ch) == 2
        {
            *last = BLANK;
        }
    }

    /// Cuts the line to at most `max` columns, ending in `…` when it was cut.
    pub(crate) fn truncate(&mut self, max: usize) {
        if self.cells.len() <= max {
            return;
        }
        if max == 0 {
            self.cells.clear();
            return;
        }
        self.cut(max - 1);
        let paint = self.cells.last().map_or(Paint::Plain, |c| c.paint);
        self.cells.push(Cell { ch: '…', paint });
    }

    /// Appends the line to `out` with a final newline, trailing blanks trimmed; with
    /// `color`, each run of painted cells is wrapped in its ANSI code and a reset.
    pub(crate) fn render(&self, color: bool, out: &mut String) {
        let end = self
            .cells
            .iter()
            .rposition(|c| c.ch != ' ')
            .map_or(0, |i| i + 1);
        let mut current = Paint::Plain;
        for cell in &self.cells[..end] {
            if cell.ch == CONTINUATION {
                continue;
            }
            if color && cell.paint != current && cell.ch != ' ' {
                if current != Paint::Plain {
                    out.push_str(RESET);
                }
                out.push_str(cell.paint.ansi());
                current = cell.paint;
            }
            out.push(cell.ch);
        }
        if current != Paint::Plain {
            out.push_str(RESET);
        }
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_count_columns_not_bytes() {
        assert_eq!(width("──▶│"), 4);
        assert_eq!(width("日本"), 4);
        assert_eq!(width("é"), 1);
        assert_eq!(clean("a\nb\x1b[31mc\u{200b}d"), "a b [31mcd");
    }

    #[test]
    fn fit_cuts_with_an_ellipsis() {
        assert_eq!(fit("context_gatherer", 8), "context…");
        assert_eq!(fit("writer", 8), "writer");
        assert_eq!(fit("日本語", 4), "日…");
        assert_eq!(fit("abc", 0), "");
        assert_eq!(pad_left("3ms", 5), "  3ms");
        assert_eq!(pad_right("3ms", 5), "3ms  ");
    }

    #[test]
    fn wide_characters_are_never_split() {
        let mut line = Line::blank(5);
        assert_eq!(line.put(0, "日本語", Paint::Plain), 4);
        line.set(1, 'x', Paint::Plain); // overwrites the second half of 日
        let mut out = String::new();
        line.render(false, &mut out);
        assert_eq!(out, " x本\n");
        let mut line = Line::blank(0);
        line.push_str("ab日本", Paint::Plain);
        line.truncate(4);
        assert_eq!(line.width(), 4);
        let mut out = String::new();
        line.render(false, &mut out);
        assert_eq!(out, "ab …\n");
    }

    #[test]
    fn colour_only_when_asked() {
        let mut line = Line::blank(0);
        line.push_str("ok ", Paint::Plain);
        line.push_str("✗ no", Paint::Error);
        let (mut plain, mut painted) = (String::new(), String::new());
        line.render(false, &mut plain);
        line.render(true, &mut painted);
        assert_eq!(plain, "ok ✗ no\n");
        assert_eq!(painted, "ok \x1b[1;31m✗ no\x1b[0m\n");
    }
}
