//! Interned skills and requirement sets.
//!
//! A requirement set is a list of `(skill, minimum level)` sorted by skill id,
//! so "does this agent qualify" is a merge walk over two short sorted lists.
//! Nothing here allocates on the routing hot path.

use super::ids::SkillId;
use ahash::AHashMap;

/// A sorted list of `(skill, level)`; used both for what an agent holds and
/// for what a conversation requires.
pub type SkillLevels = Vec<(SkillId, u8)>;

/// Maps skill names to small ids and back. Ids are never reused.
#[derive(Debug, Default, Clone)]
pub struct Interner {
    names: Vec<String>,
    ids: AHashMap<String, SkillId>,
}

impl Interner {
    /// Rebuilds an interner from names in id order (as in a snapshot).
    pub fn from_names(names: Vec<String>) -> Self {
        let ids = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), SkillId(i as u16)))
            .collect();
        Interner { names, ids }
    }

    /// The id of `name`, creating one if needed; `None` when the id space is full.
    pub fn intern(&mut self, name: &str) -> Option<SkillId> {
        if let Some(id) = self.ids.get(name) {
            return Some(*id);
        }
        if self.names.len() >= u16::MAX as usize {
            return None;
        }
        let id = SkillId(self.names.len() as u16);
        self.names.push(name.to_owned());
        self.ids.insert(name.to_owned(), id);
        Some(id)
    }

    /// The id of `name` if it was ever interned.
    pub fn get(&self, name: &str) -> Option<SkillId> {
        self.ids.get(name).copied()
    }

    pub fn name(&self, id: SkillId) -> &str {
        &self.names[id.0 as usize]
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }
}

/// Sorts by skill and keeps the highest level of a skill named twice.
pub fn normalize(mut levels: SkillLevels) -> SkillLevels {
    levels.sort_unstable();
    let mut out: SkillLevels = Vec::with_capacity(levels.len());
    for (skill, level) in levels {
        match out.last_mut() {
            Some(last) if last.0 == skill => last.1 = last.1.max(level),
            _ => out.push((skill, level)),
        }
    }
    out
}

/// Whether `held` (sorted) covers every `(skill, level)` of `required` (sorted).
pub fn satisfies(held: &[(SkillId, u8)], required: &[(SkillId, u8)]) -> bool {
    let mut h = held.iter();
    'req: for &(skill, level) in required {
        for &(hs, hl) in h.by_ref() {
            if hs == skill {
                if hl >= level {
                    continue 'req;
                }
                return false;
            }
            if hs > skill {
                return false;
            }
        }
        return false;
    }
    true
}

/// Sum of the agent's levels over the required skills (the `most_skilled` score).
pub fn score(held: &[(SkillId, u8)], required: &[(SkillId, u8)]) -> u32 {
    required
        .iter()
        .filter_map(|(s, _)| {
            held.binary_search_by_key(s, |(hs, _)| *hs)
                .ok()
                .map(|i| held[i].1 as u32)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[(u16, u8)]) -> SkillLevels {
        v.iter().map(|&(a, b)| (SkillId(a), b)).collect()
    }

    #[test]
    fn satisfies_checks_every_skill_and_level() {
        let held = s(&[(1, 3), (4, 5), (7, 1)]);
        assert!(satisfies(&held, &s(&[])));
        assert!(satisfies(&held, &s(&[(1, 3)])));
        assert!(satisfies(&held, &s(&[(1, 2), (7, 1)])));
        assert!(!satisfies(&held, &s(&[(1, 4)])));
        assert!(!satisfies(&held, &s(&[(2, 1)])));
        assert!(!satisfies(&held, &s(&[(4, 5), (9, 1)])));
        assert!(!satisfies(&s(&[]), &s(&[(0, 1)])));
    }

    #[test]
    fn normalize_sorts_and_keeps_highest() {
        assert_eq!(
            normalize(s(&[(3, 1), (1, 2), (3, 4)])),
            s(&[(1, 2), (3, 4)])
        );
    }

    #[test]
    fn score_sums_required_levels() {
        assert_eq!(
            score(&s(&[(1, 3), (4, 5)]), &s(&[(1, 1), (4, 1), (6, 1)])),
            8
        );
    }
}
