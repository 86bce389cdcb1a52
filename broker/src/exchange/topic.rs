//! Topic routing: a word trie over all binding patterns of one exchange.
//!
//! Words are separated by `.`; `*` matches exactly one word, `#` zero or more. As in RabbitMQ, an
//! empty key or pattern has no words at all, and empty words (`a..b`, leading or trailing dots) are
//! words like any other.
//!
//! # Invariants
//! - `match_into` returns every destination whose pattern matches, possibly with repeats (the
//!   caller dedupes); its cost depends on the key's words and the trie's branching along them, not on
//!   the number of bindings.
//! - `matches` (the simple recursive matcher) is the reference the trie is property-tested against.
use bytes::Bytes;
use std::collections::HashMap;

/// Split a key or pattern into words (RabbitMQ's rule: `""` has no words).
pub fn words(s: &[u8]) -> impl Iterator<Item = &[u8]> {
    let empty = s.is_empty();
    s.split(|&b| b == b'.').filter(move |_| !empty)
}

/// One trie node.
struct Node<D> {
    /// Children by literal word.
    children: HashMap<Bytes, Node<D>>,
    /// Child for `*`.
    star: Option<Box<Node<D>>>,
    /// Child for `#`.
    hash: Option<Box<Node<D>>>,
    /// Destinations whose pattern ends here.
    dests: Vec<D>,
}

impl<D> Default for Node<D> {
    fn default() -> Self {
        Node { children: HashMap::new(), star: None, hash: None, dests: Vec::new() }
    }
}

impl<D> Node<D> {
    fn is_empty(&self) -> bool {
        self.dests.is_empty() && self.children.is_empty() && self.star.is_none() && self.hash.is_none()
    }
}

/// The trie.
pub struct TopicTrie<D> {
    root: Node<D>,
}

impl<D> Default for TopicTrie<D> {
    fn default() -> Self {
        TopicTrie { root: Node::default() }
    }
}

impl<D: Clone> TopicTrie<D> {
    /// Add `dest` under `pattern`.
    pub fn insert(&mut self, pattern: &[u8], dest: D) {
        let mut node = &mut self.root;
        for w in words(pattern) {
            node = match w {
                b"*" => node.star.get_or_insert_with(Box::default),
                b"#" => node.hash.get_or_insert_with(Box::default),
                _ => node.children.entry(Bytes::copy_from_slice(w)).or_default(),
            };
        }
        node.dests.push(dest);
    }

    /// Remove one `dest` (by `same`) under `pattern`, pruning empty nodes.
    pub fn remove(&mut self, pattern: &[u8], same: impl Fn(&D) -> bool) {
        let ws: Vec<&[u8]> = words(pattern).collect();
        remove_rec(&mut self.root, &ws, &same);
    }

    /// Remove every destination matching `same` anywhere (its queue or exchange was deleted).
    pub fn retain(&mut self, keep: &impl Fn(&D) -> bool) {
        retain_rec(&mut self.root, keep);
    }

    /// Push every destination matching `key` into `out`.
    pub fn match_into(&self, key: &[u8], out: &mut Vec<D>) {
        let ws: Vec<&[u8]> = words(key).collect();
        walk(&self.root, &ws, out);
    }
}

fn walk<D: Clone>(node: &Node<D>, ws: &[&[u8]], out: &mut Vec<D>) {
    if let Some(h) = &node.hash {
        // `#` takes zero or more words.
        for i in 0..=ws.len() {
            walk(h, &ws[i..], out);
        }
    }
    let Some((first, rest)) = ws.split_first() else {
        out.extend(node.dests.iter().cloned());
        return;
    };
    if let Some(c) = node.children.get(*first) {
        walk(c, rest, out);
    }
    if let Some(s) = &node.star {
        walk(s, rest, out);
    }
}

fn remove_rec<D>(node: &mut Node<D>, ws: &[&[u8]], same: &impl Fn(&D) -> bool) -> bool {
    match ws.split_first() {
        None => {
            if let Some(i) = node.dests.iter().position(same) {
                node.dests.remove(i);
            }
        }
        Some((w, rest)) => match *w {
            b"*" => {
                if let Some(c) = &mut node.star {
                    if remove_rec(c, rest, same) {
                        node.star = None;
                    }
                }
            }
            b"#" => {
                if let Some(c) = &mut node.hash {
                    if remove_rec(c, rest, same) {
                        node.hash = None;
                    }
                }
            }
            _ => {
                if let Some(c) = node.children.get_mut(*w) {
                    if remove_rec(c, rest, same) {
                        node.children.remove(*w);
                    }
                }
            }
        },
    }
    node.is_empty()
}

fn retain_rec<D>(node: &mut Node<D>, keep: &impl Fn(&D) -> bool) -> bool {
    node.dests.retain(keep);
    node.children.retain(|_, c| !retain_rec(c, keep));
    if node.star.as_mut().is_some_and(|c| retain_rec(c, keep)) {
        node.star = None;
    }
    if node.hash.as_mut().is_some_and(|c| retain_rec(c, keep)) {
        node.hash = None;
    }
    node.is_empty()
}

/// The simple recursive matcher: true when `key` matches `pattern`.
pub fn matches(pattern: &[u8], key: &[u8]) -> bool {
    let p: Vec<&[u8]> = words(pattern).collect();
    let k: Vec<&[u8]> = words(key).collect();
    fn rec(p: &[&[u8]], k: &[&[u8]]) -> bool {
        match p.split_first() {
            None => k.is_empty(),
            Some((w, prest)) if *w == b"#" => (0..=k.len()).any(|i| rec(prest, &k[i..])),
            Some((w, prest)) => match k.split_first() {
                Some((kw, krest)) => (*w == b"*" || w == kw) && rec(prest, krest),
                None => false,
            },
        }
    }
    rec(&p, &k)
}

/// Destinations of a message with routing `keys` through the exchange's trie; whether any
/// matched.
#[inline]
pub fn route(trie: &TopicTrie<super::Dest>, keys: &[&[u8]], out: &mut super::Routed) -> bool {
    let mut found = Vec::new();
    for k in keys {
        trie.match_into(k, &mut found);
    }
    for d in &found {
        out.push(d);
    }
    !found.is_empty()
}

#[cfg(test)]
mod tests {
    use super::{matches, TopicTrie};
    use proptest::prelude::*;

    #[test]
    fn topic_patterns() {
        assert!(matches(b"a.b.c", b"a.b.c"));
        assert!(!matches(b"a.b.c", b"a.b"));
        assert!(matches(b"a.*.c", b"a.x.c"));
        assert!(!matches(b"a.*.c", b"a.c"));
        assert!(matches(b"#", b""));
        assert!(matches(b"#", b"a.b"));
        assert!(matches(b"#.#", b"a"));
        assert!(matches(b"a.#", b"a"));
        assert!(matches(b"a.#", b"a.b.c"));
        assert!(matches(b"#.c", b"a.b.c"));
        assert!(matches(b"a.#.c", b"a.c"));
        assert!(!matches(b"a.#.c", b"a.b.d"));
        assert!(matches(b"*", b"a"));
        assert!(!matches(b"*", b"a.b"));
        assert!(!matches(b"*", b""), "an empty key has no words");
        assert!(matches(b"*.*", b"."), "'.' is two empty words");
        assert!(matches(b"a.*", b"a."));
        assert!(matches(b"", b""));
        assert!(!matches(b"", b"a"));
    }

    fn word() -> impl Strategy<Value = &'static str> {
        prop_oneof![Just("a"), Just("b"), Just("c"), Just(""), Just("*"), Just("#")]
    }
    fn key_word() -> impl Strategy<Value = &'static str> {
        prop_oneof![Just("a"), Just("b"), Just("c"), Just("")]
    }

    proptest! {
        #[test]
        fn trie_agrees_with_recursive_matcher(
            patterns in proptest::collection::vec(proptest::collection::vec(word(), 0..5), 1..20),
            keys in proptest::collection::vec(proptest::collection::vec(key_word(), 0..6), 1..20),
        ) {
            let patterns: Vec<String> = patterns.into_iter().map(|p| p.join(".")).collect();
            let mut trie = TopicTrie::default();
            for (i, p) in patterns.iter().enumerate() {
                trie.insert(p.as_bytes(), i);
            }
            for k in keys {
                let k = k.join(".");
                let mut got = Vec::new();
                trie.match_into(k.as_bytes(), &mut got);
                got.sort_unstable();
                got.dedup();
                let want: Vec<usize> = (0..patterns.len()).filter(|&i| matches(patterns[i].as_bytes(), k.as_bytes())).collect();
                prop_assert_eq!(got, want, "key {:?} patterns {:?}", k, patterns);
            }
            // Removing every pattern leaves an empty trie.
            for (i, p) in patterns.iter().enumerate() {
                trie.remove(p.as_bytes(), |d| *d == i);
            }
            prop_assert!(trie.root.is_empty());
        }
    }
}
