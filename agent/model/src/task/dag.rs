//! Dependency graphs: cycle detection over the tasks of one submission plus existing tasks.

use std::collections::{BTreeMap, BTreeSet};

/// Finds a cycle among `edges` (task → the tasks it depends on). Returns the ids on one
/// cycle, in order, if there is one. Ids absent from `edges` are leaves.
pub fn find_cycle(edges: &BTreeMap<String, Vec<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    let mut marks: BTreeMap<&str, Mark> = BTreeMap::new();
    for start in edges.keys() {
        if marks.contains_key(start.as_str()) {
            continue;
        }
        // Iterative DFS: (node, index of the next dependency to visit).
        let mut stack: Vec<(&str, usize)> = vec![(start.as_str(), 0)];
        marks.insert(start.as_str(), Mark::Visiting);
        while let Some((node, i)) = stack.pop() {
            let deps = edges.get(node).map(Vec::as_slice).unwrap_or(&[]);
            if i < deps.len() {
                stack.push((node, i + 1));
                let next = deps[i].as_str();
                match marks.get(next) {
                    Some(Mark::Visiting) => {
                        let from = stack.iter().position(|(n, _)| *n == next).unwrap_or(0);
                        return Some(stack[from..].iter().map(|(n, _)| n.to_string()).collect());
                    }
                    Some(Mark::Done) => {}
                    None => {
                        marks.insert(next, Mark::Visiting);
                        stack.push((next, 0));
                    }
                }
            } else {
                marks.insert(node, Mark::Done);
            }
        }
    }
    None
}

/// All tasks that (transitively) depend on `root`, given reverse edges (task → dependents).
pub fn dependents_of(root: &str, reverse: &BTreeMap<String, Vec<String>>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut todo = vec![root.to_string()];
    while let Some(id) = todo.pop() {
        for d in reverse.get(&id).into_iter().flatten() {
            if out.insert(d.clone()) {
                todo.push(d.clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    #[test]
    fn finds_cycles_and_accepts_dags() {
        assert_eq!(find_cycle(&g(&[("a", &["b"]), ("b", &["c"]), ("c", &[])])), None);
        assert_eq!(
            find_cycle(&g(&[
                ("a", &["b", "c"]),
                ("b", &["d"]),
                ("c", &["d"]),
                ("d", &[])
            ])),
            None
        );
        let c = find_cycle(&g(&[("a", &["b"]), ("b", &["c"]), ("c", &["a"])])).expect("cycle");
        assert_eq!(c.len(), 3);
        assert_eq!(find_cycle(&g(&[("a", &["a"])])), Some(vec!["a".to_string()]));
    }

    #[test]
    fn dependents_are_transitive() {
        let rev = g(&[("a", &["b", "c"]), ("b", &["d"])]);
        let d = dependents_of("a", &rev);
        assert_eq!(d.into_iter().collect::<Vec<_>>(), vec!["b", "c", "d"]);
    }
}
