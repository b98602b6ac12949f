//! Text-level edits of `security.trust_roots` in a block-style YAML config file, so that
//! `trust add|remove` leave every other byte (comments included) as it was. The caller
//! checks the result parses to the tree it meant; `None` is a layout this does not know.

use serde_norway::Value;

use super::RootsEdit;

/// Spaces of indentation assumed when the file shows none.
const INDENT: usize = 2;

fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// Not blank and not a comment.
fn is_content(line: &str) -> bool {
    let t = line.trim();
    !t.is_empty() && !t.starts_with('#')
}

/// A block sequence item (`- …`).
fn is_item(line: &str) -> bool {
    let t = line.trim_start_matches(' ');
    t.trim_end() == "-" || t.starts_with("- ")
}

/// What follows `key:` on `line`, when the line (after its indent) is that key.
fn key_rest<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let after = line.trim_start_matches(' ').strip_prefix(key)?;
    let rest = after.trim_start_matches(' ').strip_prefix(':')?;
    (rest.is_empty() || rest.starts_with([' ', '\t', '\r', '\n'])).then_some(rest)
}

/// Whether the rest of a `key:` line holds a value (more than a comment).
fn has_inline_value(rest: &str) -> bool {
    is_content(rest)
}

/// One past the last line of the value of the key on line `start` (indented
/// `key_indent`): the lines indented deeper, or sequence items at the key's indent.
/// Comments and blank lines after its last line are not part of it.
fn block_end(lines: &[&str], start: usize, key_indent: usize) -> usize {
    let mut end = start + 1;
    for (i, line) in lines.iter().enumerate().skip(start + 1) {
        if !is_content(line) {
            continue;
        }
        if indent(line) > key_indent || (indent(line) == key_indent && is_item(line)) {
            end = i + 1;
        } else {
            break;
        }
    }
    end
}

fn push_line(out: &mut String, line: &str) {
    out.push_str(line);
    if !line.ends_with('\n') {
        out.push('\n');
    }
}

/// `entry` as a block sequence item indented `indent`.
fn render_item(entry: &Value, indent: usize) -> Option<String> {
    let body = serde_norway::to_string(entry).ok()?;
    let pad = " ".repeat(indent);
    let mut out = String::new();
    for (i, line) in body.lines().enumerate() {
        let lead = if i == 0 { "- " } else { "  " };
        out.push_str(&format!("{pad}{lead}{line}\n"));
    }
    Some(out)
}

/// A whole `trust_roots:` block holding `roots`, the key indented `indent`.
fn render_block(roots: &[Value], indent: usize) -> Option<String> {
    let pad = " ".repeat(indent);
    if roots.is_empty() {
        return Some(format!("{pad}trust_roots: []\n"));
    }
    let mut out = format!("{pad}trust_roots:\n");
    for entry in roots {
        out.push_str(&render_item(entry, indent + INDENT)?);
    }
    Some(out)
}

/// The items of a block sequence `block` (its key line first): their indent and,
/// for each, its lines. A comment right above an item goes with it, but those above
/// the first stay with the key (they may be about the whole list).
fn items<'a>(block: &[&'a str]) -> Option<(usize, Vec<Vec<&'a str>>)> {
    let first = (1..block.len()).find(|&i| is_content(block[i]))?;
    let item_indent = indent(block[first]);
    let mut spans: Vec<Vec<&str>> = Vec::new();
    let mut pending = Vec::new();
    for &line in &block[first..] {
        if !is_content(line) {
            pending.push(line);
            continue;
        }
        if indent(line) < item_indent || (indent(line) == item_indent && !is_item(line)) {
            return None;
        }
        if indent(line) == item_indent {
            spans.push(Vec::new());
        }
        let span = spans.last_mut().expect("the first content line is an item");
        span.append(&mut pending);
        span.push(line);
    }
    is_item(block[first]).then_some((item_indent, spans))
}

/// The new `trust_roots` block for the old one `block` (its key line first, its
/// value's lines after), the key indented `indent`: kept items keep their text.
fn rewrite(block: &[&str], indent: usize, edit: &RootsEdit) -> Option<String> {
    let key_line = block[0];
    let rest = key_rest(key_line, "trust_roots")?;
    let items = match has_inline_value(rest) {
        true => None,
        false => items(block),
    };
    let Some((item_indent, spans)) = items.filter(|(_, s)| s.len() == edit.old.len()) else {
        // Inline (`[]`, flow, null) or unknown: the whole block anew.
        return render_block(&edit.roots(), indent);
    };
    let mut out = String::new();
    let kept: Vec<&Vec<&str>> = spans
        .iter()
        .zip(&edit.keep)
        .filter(|(_, keep)| **keep)
        .map(|(span, _)| span)
        .collect();
    if kept.is_empty() && edit.append.is_none() {
        // `trust_roots:` alone would be null: say the empty list, keeping the comment.
        let colon = key_line.len() - rest.len();
        push_line(&mut out, &format!("{} []{rest}", &key_line[..colon]));
    } else {
        push_line(&mut out, key_line);
    }
    let first_item = block.iter().position(|l| is_content(l) && is_item(l))?;
    for line in &block[1..first_item] {
        push_line(&mut out, line);
    }
    for line in kept.into_iter().flatten() {
        push_line(&mut out, line);
    }
    if let Some(entry) = &edit.append {
        out.push_str(&render_item(entry, item_indent)?);
    }
    Some(out)
}

/// `text` with `security.trust_roots` changed by `edit`, every other line as it was:
/// the block replaced where it is, else added at the end of `security:`, else a
/// `security:` added at the end of the file.
pub(super) fn splice(text: &str, edit: &RootsEdit) -> Option<String> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut out = String::with_capacity(text.len() + 512);
    let top = lines
        .iter()
        .position(|l| indent(l) == 0 && key_rest(l, "security").is_some());
    let Some(security) = top else {
        lines.iter().for_each(|l| push_line(&mut out, l));
        out.push_str("security:\n");
        out.push_str(&render_block(&edit.roots(), INDENT)?);
        return Some(out);
    };
    if has_inline_value(key_rest(lines[security], "security")?) {
        return None;
    }
    let end = block_end(&lines, security, 0);
    let mut children = (security + 1..end).filter(|&i| is_content(lines[i]));
    let child = children.next().map_or(INDENT, |i| indent(lines[i]));
    let roots = (security + 1..end).find(|&i| {
        is_content(lines[i])
            && indent(lines[i]) == child
            && key_rest(lines[i], "trust_roots").is_some()
    });
    let (at, new, resume) = match roots {
        Some(at) => {
            let roots_end = block_end(&lines, at, child);
            (at, rewrite(&lines[at..roots_end], child, edit)?, roots_end)
        }
        None => (end, render_block(&edit.roots(), child)?, end),
    };
    lines[..at].iter().for_each(|l| push_line(&mut out, l));
    out.push_str(&new);
    lines[resume..].iter().for_each(|l| out.push_str(l));
    Some(out)
}
