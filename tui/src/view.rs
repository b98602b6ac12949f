//! What the actor table shows of the reducer's rows: the tree (collapsible, siblings
//! sorted) or a flat list (sorted as a whole), narrowed by a text filter. Pure.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};

use crate::model::Row;

/// Longest filter text, in characters.
pub const FILTER_CHARS_MAX: usize = 64;

/// A column of the actor table (closed); also what the table can be sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Name,
    Kind,
    State,
    Pid,
    Cpu,
    Rss,
    MsgsIn,
    MsgsOut,
    Errors,
    Restarts,
    Breaker,
    Tokens,
    Cost,
}

impl Column {
    pub const ALL: [Column; 13] = [
        Column::Name,
        Column::Kind,
        Column::State,
        Column::Pid,
        Column::Cpu,
        Column::Rss,
        Column::MsgsIn,
        Column::MsgsOut,
        Column::Errors,
        Column::Restarts,
        Column::Breaker,
        Column::Tokens,
        Column::Cost,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Column::Name => "NAME",
            Column::Kind => "KIND",
            Column::State => "STATE",
            Column::Pid => "PID",
            Column::Cpu => "CPU%",
            Column::Rss => "RSS",
            Column::MsgsIn => "IN",
            Column::MsgsOut => "OUT",
            Column::Errors => "ERR",
            Column::Restarts => "RST",
            Column::Breaker => "BREAKER",
            Column::Tokens => "TOKENS",
            Column::Cost => "µUSD",
        }
    }

    /// The next column in [`Column::ALL`], or `None` after the last (back to tree order).
    pub fn next(current: Option<Column>) -> Option<Column> {
        match current {
            None => Some(Column::ALL[0]),
            Some(c) => {
                let i = Column::ALL.iter().position(|&x| x == c).expect("listed");
                Column::ALL.get(i + 1).copied()
            }
        }
    }

    fn compare(self, a: &Row, b: &Row) -> Ordering {
        match self {
            Column::Name => a.name.cmp(&b.name),
            Column::Kind => a.kind.cmp(&b.kind),
            Column::State => a.state.cmp(&b.state),
            Column::Pid => a.pid.cmp(&b.pid),
            Column::Cpu => match (a.cpu_pct, b.cpu_pct) {
                (Some(x), Some(y)) => x.total_cmp(&y),
                (x, y) => x.is_some().cmp(&y.is_some()),
            },
            Column::Rss => a.rss_kb.cmp(&b.rss_kb),
            Column::MsgsIn => a.msgs_in.cmp(&b.msgs_in),
            Column::MsgsOut => a.msgs_out.cmp(&b.msgs_out),
            Column::Errors => a.errors.cmp(&b.errors),
            Column::Restarts => a.restarts.cmp(&b.restarts),
            Column::Breaker => a.breaker.cmp(&b.breaker),
            Column::Tokens => a.tokens.cmp(&b.tokens),
            Column::Cost => a.usd_micros.cmp(&b.usd_micros),
        }
    }
}

/// Tree or flat list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Tree,
    Flat,
}

/// The sort: a column and a direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sort {
    pub column: Column,
    pub descending: bool,
}

/// How the table is viewed. Nodes start expanded: only keys in `collapsed` are folded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ViewState {
    pub mode: Mode,
    pub sort: Option<Sort>,
    filter: String,
    collapsed: HashSet<String>,
}

/// One line of the table: which row, at what indent, and whether it is folded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line {
    /// Index into the reducer's rows.
    pub row: usize,
    pub indent: usize,
    pub collapsed: bool,
}

impl ViewState {
    pub fn filter(&self) -> &str {
        &self.filter
    }

    /// Sets the filter, cut to [`FILTER_CHARS_MAX`] characters.
    pub fn set_filter(&mut self, text: &str) {
        self.filter = text.chars().take(FILTER_CHARS_MAX).collect();
    }

    pub fn is_collapsed(&self, key: &str) -> bool {
        self.collapsed.contains(key)
    }

    /// Folds an expanded node or unfolds a folded one.
    /// Folds every row that has children below the root (the tree starts collapsed:
    /// root, then `system` and `runs` folded).
    pub fn collapse_all(&mut self, rows: &[Row]) {
        for row in rows.iter().filter(|r| r.has_children && r.depth >= 1) {
            self.collapsed.insert(row.key.clone());
        }
    }

    pub fn toggle_collapsed(&mut self, key: &str) {
        if !self.collapsed.remove(key) {
            self.collapsed.insert(key.to_owned());
        }
    }

    /// `s`: the next sort column (ascending), then back to tree order.
    pub fn next_sort(&mut self) {
        let column = Column::next(self.sort.map(|s| s.column));
        self.sort = column.map(|column| Sort {
            column,
            descending: false,
        });
    }

    /// `S`: the other direction (sorting by name first when unsorted).
    pub fn reverse_sort(&mut self) {
        let sort = self.sort.get_or_insert(Sort {
            column: Column::Name,
            descending: false,
        });
        sort.descending = !sort.descending;
    }

    fn matches(&self, row: &Row) -> bool {
        if self.filter.is_empty() {
            return true;
        }
        let needle = self.filter.to_lowercase();
        [row.name.as_str(), row.state.as_str(), row.kind.as_str()]
            .iter()
            .any(|h| h.to_lowercase().contains(&needle))
    }

    fn order(&self, rows: &[Row], a: usize, b: usize) -> Ordering {
        match self.sort {
            None => a.cmp(&b),
            Some(Sort { column, descending }) => {
                let o = column.compare(&rows[a], &rows[b]);
                // Ties keep tree order in both directions.
                if descending { o.reverse() } else { o }.then(a.cmp(&b))
            }
        }
    }

    /// The table's lines for `rows` (in the reducer's pre-order).
    pub fn lines(&self, rows: &[Row]) -> Vec<Line> {
        match self.mode {
            Mode::Flat => {
                let mut idx: Vec<usize> = (0..rows.len())
                    .filter(|&i| self.matches(&rows[i]))
                    .collect();
                idx.sort_by(|&a, &b| self.order(rows, a, b));
                idx.into_iter()
                    .map(|row| Line {
                        row,
                        indent: 0,
                        collapsed: false,
                    })
                    .collect()
            }
            Mode::Tree => self.tree_lines(rows),
        }
    }

    fn tree_lines(&self, rows: &[Row]) -> Vec<Line> {
        let index: HashMap<&str, usize> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| (r.key.as_str(), i))
            .collect();
        let mut children: Vec<Vec<usize>> = vec![Vec::new(); rows.len()];
        let mut roots = Vec::new();
        for (i, r) in rows.iter().enumerate() {
            match r.parent.as_deref().and_then(|p| index.get(p)) {
                Some(&p) => children[p].push(i),
                None => roots.push(i),
            }
        }
        // Pre-order puts children after parents: one pass backwards settles "it or a
        // descendant matches".
        let mut keep: Vec<bool> = rows.iter().map(|r| self.matches(r)).collect();
        for i in (0..rows.len()).rev() {
            if children[i].iter().any(|&c| keep[c]) {
                keep[i] = true;
            }
        }
        let mut out = Vec::new();
        let mut stack: Vec<(usize, usize)> = Vec::new();
        let push_sorted = |stack: &mut Vec<(usize, usize)>, mut ids: Vec<usize>, indent: usize| {
            ids.retain(|&i| keep[i]);
            ids.sort_by(|&a, &b| self.order(rows, a, b));
            stack.extend(ids.into_iter().rev().map(|i| (i, indent)));
        };
        push_sorted(&mut stack, roots, 0);
        while let Some((i, indent)) = stack.pop() {
            let collapsed = self.is_collapsed(&rows[i].key) && rows[i].has_children;
            out.push(Line {
                row: i,
                indent,
                collapsed,
            });
            if !collapsed {
                push_sorted(&mut stack, children[i].clone(), indent + 1);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{snapshot, tree};
    use crate::model::Monitor;

    fn monitor() -> Monitor {
        let mut m = Monitor::new();
        m.apply(&snapshot(1, 1_000, tree(0, 0)));
        m.apply(&snapshot(2, 2_000, tree(300, 100)));
        m
    }

    fn names(m: &Monitor, v: &ViewState) -> Vec<String> {
        v.lines(m.rows())
            .iter()
            .map(|l| format!("{}{}", " ".repeat(l.indent), m.rows()[l.row].name))
            .collect()
    }

    #[test]
    fn tree_order_by_default_and_every_node_expanded() {
        let m = monitor();
        let v = ViewState::default();
        let n = names(&m, &v);
        assert_eq!(n.len(), m.rows().len());
        assert_eq!(n[0], "root");
        assert_eq!(n[1], " system");
        assert_eq!(n[2], "  bus");
        assert!(n.contains(&"   agent-writer".to_owned()));
    }

    #[test]
    fn collapsing_hides_descendants_and_toggles_back() {
        let m = monitor();
        let mut v = ViewState::default();
        v.toggle_collapsed("root/system");
        let lines = v.lines(m.rows());
        let n = names(&m, &v);
        assert_eq!(&n[..3], &["root", " system", " runs"]);
        assert!(lines[1].collapsed);
        v.toggle_collapsed("root/system");
        assert_eq!(names(&m, &v).len(), m.rows().len());
        // A leaf cannot be shown as folded.
        v.toggle_collapsed("root/system/bus");
        assert!(v.lines(m.rows()).iter().all(|l| !l.collapsed));
    }

    #[test]
    fn sorting_orders_siblings_in_the_tree_and_everything_when_flat() {
        let m = monitor();
        let mut v = ViewState {
            sort: Some(Sort {
                column: Column::Name,
                descending: false,
            }),
            ..ViewState::default()
        };
        let n = names(&m, &v);
        assert_eq!(&n[..3], &["root", " runs", "  run-agents"]);
        v.mode = Mode::Flat;
        v.sort = Some(Sort {
            column: Column::Cpu,
            descending: true,
        });
        let n = names(&m, &v);
        // The kernel (metrics: 10 %) and the writer (30 %) lead; rows without a figure last.
        assert_eq!(&n[..2], &["agent-writer", "metrics"]);
        v.reverse_sort();
        let n = names(&m, &v);
        assert_eq!(n.last().unwrap(), "agent-writer");
    }

    #[test]
    fn sort_cycles_through_every_column_then_back_to_tree_order() {
        let mut v = ViewState::default();
        for c in Column::ALL {
            v.next_sort();
            assert_eq!(v.sort.unwrap().column, c);
        }
        v.next_sort();
        assert_eq!(v.sort, None);
    }

    #[test]
    fn filter_keeps_matches_and_their_ancestors_in_the_tree() {
        let m = monitor();
        let mut v = ViewState::default();
        v.set_filter("WRITER");
        assert_eq!(
            names(&m, &v),
            [
                "root",
                " runs",
                "  run-r0000000000000001",
                "   agent-writer"
            ]
        );
        v.mode = Mode::Flat;
        assert_eq!(names(&m, &v), ["agent-writer"]);
        v.set_filter("quarantine");
        assert_eq!(names(&m, &v), ["quarantine", "agent-scraper"]);
        v.set_filter(&"x".repeat(500));
        assert_eq!(v.filter().len(), FILTER_CHARS_MAX);
    }
}
