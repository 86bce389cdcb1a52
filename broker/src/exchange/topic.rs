//! Topic pattern matching: words separated by `.`, `*` matches exactly one word, `#` zero or more.
//!
//! # Invariants
//! - Runs in O(pattern words x key words) time with no allocation beyond two small word vectors.
//!   TODO(routing issue): a word trie over all bindings for large binding counts.

/// True when `key` matches binding `pattern`.
pub fn matches(pattern: &[u8], key: &[u8]) -> bool {
    let p: Vec<&[u8]> = pattern.split(|&b| b == b'.').collect();
    let k: Vec<&[u8]> = key.split(|&b| b == b'.').collect();
    // Dynamic programming over (pattern index, key index): reachable[j] = p[..i] matches k[..j].
    let mut reach = vec![false; k.len() + 1];
    reach[0] = true;
    for w in &p {
        let mut next = vec![false; k.len() + 1];
        if *w == b"#" {
            let mut any = false;
            for j in 0..=k.len() {
                any |= reach[j];
                next[j] = any;
            }
        } else {
            for j in 0..k.len() {
                if reach[j] && (*w == b"*" || *w == k[j]) {
                    next[j + 1] = true;
                }
            }
        }
        reach = next;
    }
    reach[k.len()]
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn topic_patterns() {
        assert!(matches(b"a.b.c", b"a.b.c"));
        assert!(!matches(b"a.b.c", b"a.b"));
        assert!(matches(b"a.*.c", b"a.x.c"));
        assert!(!matches(b"a.*.c", b"a.c"));
        assert!(matches(b"#", b""));
        assert!(matches(b"#", b"a.b"));
        assert!(matches(b"a.#", b"a"));
        assert!(matches(b"a.#", b"a.b.c"));
        assert!(matches(b"#.c", b"a.b.c"));
        assert!(matches(b"a.#.c", b"a.c"));
        assert!(!matches(b"a.#.c", b"a.b.d"));
        assert!(matches(b"*", b"a"));
        assert!(!matches(b"*", b"a.b"));
        assert!(matches(b"", b""));
    }
}
