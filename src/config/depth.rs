//! A nesting-depth limit checked on the raw YAML text before it is parsed:
//! the parser takes time quadratic in the depth (100,000 levels of `[` kept it
//! busy for over 30 s), and a minigcs config is three levels deep. The scan is
//! one pass over the text. It counts flow collections (`[`, `{`) and block
//! nesting (deeper indentation, and each `- ` / `? ` indicator that opens a
//! node on the same line), and skips what cannot nest: quoted scalars,
//! comments, block scalar (`|`, `>`) contents and brackets inside plain
//! scalars. It may under-count odd but valid YAML (the parser then decides);
//! it never rejects text whose real nesting is within the limit.

/// Deepest nesting accepted.
pub const MAX_DEPTH: usize = 64;

/// Scanner state carried from one line to the next.
#[derive(Default)]
struct Scan {
    /// Indentation of each open block level.
    blocks: Vec<usize>,
    /// Open `[` / `{`.
    flow: usize,
    /// Inside a quoted scalar that began on an earlier line.
    quote: Option<char>,
    /// Inside a block scalar introduced by a line with this indentation.
    block_scalar: Option<usize>,
}

/// Err names the line where the nesting first goes deeper than `MAX_DEPTH`.
pub fn check(text: &str) -> Result<(), String> {
    let mut scan = Scan::default();
    for (n, line) in text.lines().enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if scan.line(line).is_err() {
            return Err(format!(
                "config is nested more than {MAX_DEPTH} levels deep at line {} (a minigcs config nests a few levels)",
                n + 1
            ));
        }
    }
    Ok(())
}

/// Too deep.
struct TooDeep;

fn indentation(line: &str) -> usize {
    line.bytes().take_while(|&b| b == b' ').count()
}

/// `- `, `? ` or `: ` (or the indicator alone at the end of the line).
fn opens_block_node(rest: &[u8]) -> bool {
    matches!(rest.first(), Some(b'-' | b'?' | b':'))
        && matches!(rest.get(1), None | Some(b' ' | b'\t'))
}

impl Scan {
    fn depth(&self) -> usize {
        self.blocks.len() + self.flow
    }

    fn deeper(&mut self, indent: usize) -> Result<(), TooDeep> {
        self.blocks.push(indent);
        if self.depth() > MAX_DEPTH {
            return Err(TooDeep);
        }
        Ok(())
    }

    fn line(&mut self, line: &str) -> Result<(), TooDeep> {
        let indent = indentation(line);
        let bytes = line.as_bytes();
        if let Some(parent) = self.block_scalar {
            if indent >= bytes.len() || indent > parent {
                return Ok(()); // blank or content of the block scalar
            }
            self.block_scalar = None;
        }
        if self.quote.is_some() || self.flow > 0 {
            return self.inline(bytes, 0, indent, false);
        }
        let mut col = indent;
        if col >= bytes.len() || bytes[col] == b'#' {
            return Ok(());
        }
        if col == 0 && (bytes.starts_with(b"---") || bytes.starts_with(b"...")) {
            // A document marker: the next document starts from nothing.
            self.blocks.clear();
            col = 3;
            if !matches!(bytes.get(3), None | Some(b' ' | b'\t')) {
                col = 0;
            }
        } else {
            while self.blocks.last().is_some_and(|&top| top >= indent) {
                self.blocks.pop();
            }
            self.deeper(indent)?;
        }
        // `- - - x`: every indicator opens one more level on this line.
        loop {
            while bytes.get(col).is_some_and(|&b| b == b' ' || b == b'\t') {
                col += 1;
            }
            if !opens_block_node(&bytes[col.min(bytes.len())..]) {
                break;
            }
            col += 1;
            self.deeper(col)?;
        }
        self.inline(bytes, col, indent, true)
    }

    /// The rest of a line from `start`; `node_start`: a node may begin there.
    fn inline(
        &mut self,
        bytes: &[u8],
        start: usize,
        indent: usize,
        node_start: bool,
    ) -> Result<(), TooDeep> {
        let mut at_node_start = node_start || self.flow > 0;
        let mut after_space = true;
        let mut i = start;
        while i < bytes.len() {
            let c = bytes[i];
            i += 1;
            if let Some(q) = self.quote {
                match (q, c) {
                    ('"', b'\\') => i += 1,
                    ('\'', b'\'') if bytes.get(i) == Some(&b'\'') => i += 1,
                    ('"', b'"') | ('\'', b'\'') => self.quote = None,
                    _ => {}
                }
                after_space = false;
                continue;
            }
            let space = c == b' ' || c == b'\t';
            let next_is_space = bytes.get(i).is_none_or(|&b| b == b' ' || b == b'\t');
            at_node_start = match c {
                _ if space => at_node_start,
                b'#' if after_space => return Ok(()),
                b'"' | b'\'' if at_node_start => {
                    self.quote = Some(c as char);
                    false
                }
                b'[' | b'{' if at_node_start => {
                    self.flow += 1;
                    if self.depth() > MAX_DEPTH {
                        return Err(TooDeep);
                    }
                    true
                }
                b']' | b'}' if self.flow > 0 => {
                    self.flow -= 1;
                    false
                }
                b',' => self.flow > 0,
                b':' => next_is_space || self.flow > 0,
                b'|' | b'>' if at_node_start && self.flow == 0 && is_block_header(&bytes[i..]) => {
                    self.block_scalar = Some(indent);
                    return Ok(());
                }
                b'&' | b'!' if at_node_start => {
                    // An anchor or a tag: the node follows it.
                    while bytes.get(i).is_some_and(|&b| b != b' ' && b != b'\t') {
                        i += 1;
                    }
                    true
                }
                _ => false,
            };
            after_space = space;
        }
        Ok(())
    }
}

/// What follows `|` or `>` makes it a block scalar header: indentation and
/// chomping indicators, then nothing but a comment.
fn is_block_header(rest: &[u8]) -> bool {
    let header = rest
        .iter()
        .take_while(|b| b"+-0123456789".contains(b))
        .count();
    let tail = &rest[header..];
    let blank = tail
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count();
    blank == tail.len() || (blank > 0 && tail[blank] == b'#')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth_error(text: &str) -> String {
        check(text).expect_err("must be too deep")
    }

    #[test]
    fn deep_flow_and_block_nesting_are_rejected_with_the_line() {
        let err = depth_error(&"[".repeat(100_000));
        assert!(
            err.contains("more than 64 levels") && err.contains("line 1"),
            "{err}"
        );
        assert!(depth_error(&"{a: ".repeat(100_000)).contains("line 1"));
        let dashes = format!("nodes:\n{}x\n", "- ".repeat(100_000));
        assert!(depth_error(&dashes).contains("line 2"));
        let questions = format!("{}x\n", "? ".repeat(1000));
        depth_error(&questions);
        // Block mappings, one more space of indentation per level.
        let mut mapping = String::new();
        for level in 0..100 {
            mapping.push_str(&format!("{}k{level}:\n", " ".repeat(level)));
        }
        assert!(
            depth_error(&mapping).contains("line 65"),
            "{}",
            depth_error(&mapping)
        );
        // Flow nesting spread over many lines, and mixed with block nesting.
        depth_error(&"[\n".repeat(1000));
        depth_error(&format!("a:\n  b:\n    c: {}", "[".repeat(62)));
    }

    #[test]
    fn nesting_up_to_the_limit_is_accepted() {
        check(&format!("a: {}{}", "[".repeat(63), "]".repeat(63))).unwrap();
        depth_error(&format!("a: {}{}", "[".repeat(64), "]".repeat(64)));
        let mut mapping = String::new();
        for level in 0..64 {
            mapping.push_str(&format!("{}k{level}:\n", " ".repeat(level)));
        }
        check(&mapping).unwrap();
        // Siblings do not add up.
        check(&"- [[[[a]]]]\n".repeat(10_000)).unwrap();
    }

    #[test]
    fn brackets_that_do_not_nest_are_not_counted() {
        let text = format!(
            "# {deep}\n\
             quoted: \"{deep} \\\" {deep}\"\n\
             single: '{deep} '' {deep}'\n\
             plain: it's {deep} text\n\
             url: http://x/{deep}\n\
             list: [\"]]]{deep}\", '{deep}', a, b] # {deep}\n\
             multi: \"first line {deep}\n  second line {deep}\"\n\
             literal: |\n  {deep}\n      {deep}\n    {deep}\n\
             folded: >-\n  {deep}\n\n  {deep}\n\
             tagged: !!seq [a]\n\
             anchored: &x [b]\n\
             after: {{a: [1, {{b: 2}}]}}\n",
            deep = "[{".repeat(200)
        );
        check(&text).unwrap();
        check(include_str!("../../tests/data/seed-config.yaml")).unwrap();
        check(include_str!("../../config.yaml")).unwrap();
    }

    #[test]
    fn documents_start_from_nothing() {
        let mut text = String::new();
        for _ in 0..100 {
            text.push_str("---\na:\n  b:\n    c: [[1]]\n");
        }
        check(&text).unwrap();
    }
}
