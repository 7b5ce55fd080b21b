//! Complementary suppression: which counts of a publication are withheld so that no count
//! below the threshold can be read in it or worked out from the counts it does show.
//!
//! A publication is a list of counts and the tables they form: a table is a total and the
//! parts a reader may assume add up to it (a system's records and its age bands; all
//! records and each system's). For a threshold `T` the rule is:
//!
//! 1. Primary: every count from 1 to `T − 1` is withheld. Zero is shown: it discloses no
//!    one, and breakdowns show it anyway by leaving a key out.
//! 2. Complementary, for a shown total: take any breakdown of it — its table's parts, any
//!    of which may in turn be replaced by the parts of one of its own tables. If the
//!    breakdown holds a withheld count, it must hold at least two, and the total minus the
//!    shown counts of the breakdown — what a reader learns of the withheld ones together —
//!    must be at least `T`.
//! 3. Complementary, for a withheld total: at least one of its parts is withheld too, or
//!    the total is the sum of shown counts.
//! 4. A breakdown that breaks 2 or 3 gets its smallest shown non-zero count withheld (a
//!    zero adds nothing to what the withheld counts hide); when it has none, the total is.
//!    This repeats until nothing breaks the rule, so each added suppression is one a
//!    breakdown needed, and the one that hides the least.
//!
//! The tables must nest: a count is a part of at most one table and never a part of its
//! own breakdown. The sums then form a forest, and in a forest of equations where each
//! equation has no unknown or at least two, no unknown is determined by any combination
//! of them: no withheld count can be computed from the shown ones.

/// A count's position in the publication.
pub(super) type CountId = usize;

/// A total and the counts that add up to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Table {
    pub total: CountId,
    pub parts: Vec<CountId>,
}

/// The tables do not nest, so the rule's guarantee does not hold: nothing is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the statistics' tables do not nest")]
pub(super) struct NotNested;

/// Which of `counts` to withhold (true) under the rule above, for threshold `below`.
pub(super) fn withheld(
    counts: &[i64],
    tables: &[Table],
    below: i64,
) -> Result<Vec<bool>, NotNested> {
    let depths = nesting_depths(counts.len(), tables)?;
    // Innermost tables first: a complement found there also settles the tables above,
    // whereas one chosen above could leave an inner table needing another.
    let mut innermost_first: Vec<(usize, &Table)> = depths.into_iter().zip(tables).collect();
    innermost_first.sort_by_key(|&(depth, _)| std::cmp::Reverse(depth));
    let publication = Publication {
        counts,
        tables,
        below,
    };
    let mut withheld: Vec<bool> = counts.iter().map(|&c| c > 0 && c < below).collect();
    // One count at a time, rescanning: an added suppression can settle another table.
    while let Some(next) = innermost_first
        .iter()
        .find_map(|(_, table)| publication.complement(table, &withheld))
    {
        withheld[next] = true;
    }
    Ok(withheld)
}

/// How many tables each table sits inside, once checked that every count is in range, is
/// a part of at most one table, and is no part of its own breakdown.
fn nesting_depths(count: usize, tables: &[Table]) -> Result<Vec<usize>, NotNested> {
    let mut part_of: Vec<Option<usize>> = vec![None; count];
    for (t, table) in tables.iter().enumerate() {
        if table.total >= count {
            return Err(NotNested);
        }
        for &part in &table.parts {
            let slot = part_of.get_mut(part).ok_or(NotNested)?;
            if slot.replace(t).is_some() {
                return Err(NotNested);
            }
        }
    }
    // Upwards from each table, through the tables its total is a part of: a loop would
    // come back within as many steps as there are tables.
    tables
        .iter()
        .map(|table| {
            let mut above = part_of[table.total];
            let mut depth = 0;
            while let Some(t) = above {
                if depth == tables.len() {
                    return Err(NotNested);
                }
                depth += 1;
                above = part_of[tables[t].total];
            }
            Ok(depth)
        })
        .collect()
}

struct Publication<'a> {
    counts: &'a [i64],
    tables: &'a [Table],
    below: i64,
}

/// The breakdown with the most shown, for 0, 1 and 2-or-more withheld counts.
type Worst = [Option<Breakdown>; 3];

#[derive(Debug, Clone)]
struct Breakdown {
    /// Withheld counts in it, capped at 2.
    withheld: usize,
    /// The sum of its shown counts.
    shown_sum: i64,
    shown: Vec<CountId>,
}

impl Publication<'_> {
    /// The count `table` needs withheld next, if it breaks the rule.
    fn complement(&self, table: &Table, withheld: &[bool]) -> Option<CountId> {
        let shown_part = |parts: &[CountId]| {
            parts
                .iter()
                .copied()
                .filter(|&p| !withheld[p] && self.counts[p] > 0)
                .min_by_key(|&p| self.counts[p])
        };
        if withheld[table.total] {
            if table.parts.iter().any(|&p| withheld[p]) {
                return None;
            }
            return shown_part(&table.parts);
        }
        let [_, one, several] = self.through(table, withheld);
        let exposed = one
            .or_else(|| several.filter(|b| self.counts[table.total] - b.shown_sum < self.below))?;
        Some(shown_part(&exposed.shown).unwrap_or(table.total)).filter(|&next| !withheld[next])
    }

    /// The worst breakdowns of `table`'s total through its parts.
    fn through(&self, table: &Table, withheld: &[bool]) -> Worst {
        let empty = Breakdown {
            withheld: 0,
            shown_sum: 0,
            shown: Vec::new(),
        };
        table
            .parts
            .iter()
            .fold([Some(empty), None, None], |sum, &part| {
                combine(&sum, &self.of(part, withheld))
            })
    }

    /// The worst breakdowns of one count: itself, or through any table it is the total of.
    fn of(&self, count: CountId, withheld: &[bool]) -> Worst {
        let mut worst: Worst = [None, None, None];
        let itself = if withheld[count] {
            Breakdown {
                withheld: 1,
                shown_sum: 0,
                shown: Vec::new(),
            }
        } else {
            Breakdown {
                withheld: 0,
                shown_sum: self.counts[count],
                shown: vec![count],
            }
        };
        keep(&mut worst, itself);
        for table in self.tables.iter().filter(|t| t.total == count) {
            for breakdown in self.through(table, withheld).into_iter().flatten() {
                keep(&mut worst, breakdown);
            }
        }
        worst
    }
}

/// Keeps `breakdown` if it shows more than the one kept for its number of withheld counts.
fn keep(worst: &mut Worst, breakdown: Breakdown) {
    let slot = &mut worst[breakdown.withheld];
    if slot
        .as_ref()
        .is_none_or(|kept| breakdown.shown_sum > kept.shown_sum)
    {
        *slot = Some(breakdown);
    }
}

/// The worst breakdowns of two disjoint groups of counts taken together.
fn combine(left: &Worst, right: &Worst) -> Worst {
    let mut worst: Worst = [None, None, None];
    for l in left.iter().flatten() {
        for r in right.iter().flatten() {
            keep(
                &mut worst,
                Breakdown {
                    withheld: (l.withheld + r.withheld).min(2),
                    shown_sum: l.shown_sum + r.shown_sum,
                    shown: [l.shown.as_slice(), r.shown.as_slice()].concat(),
                },
            );
        }
    }
    worst
}

#[cfg(test)]
pub(super) mod audit {
    //! An attacker's view of a publication, independent of the rule: which withheld counts
    //! linear algebra over the published sums determines.

    use super::{CountId, Table};

    /// An exact fraction.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct Fraction(i128, i128);

    impl Fraction {
        fn new(numerator: i128, denominator: i128) -> Self {
            let divisor = gcd(numerator, denominator).max(1) * denominator.signum();
            Self(numerator / divisor, denominator / divisor)
        }
        fn is_zero(self) -> bool {
            self.0 == 0
        }
        fn sub_mul(self, factor: Self, other: Self) -> Self {
            let product = Self::new(factor.0 * other.0, factor.1 * other.1);
            Self::new(self.0 * product.1 - product.0 * self.1, self.1 * product.1)
        }
        fn div(self, other: Self) -> Self {
            Self::new(self.0 * other.1, self.1 * other.0)
        }
    }

    fn gcd(a: i128, b: i128) -> i128 {
        if b == 0 { a.abs() } else { gcd(b, a % b) }
    }

    /// The withheld counts that some combination of the tables' sums pins down, given
    /// every shown count.
    pub(crate) fn determined(withheld: &[bool], tables: &[Table]) -> Vec<CountId> {
        let unknowns: Vec<CountId> = (0..withheld.len()).filter(|&c| withheld[c]).collect();
        let column = |count: CountId| unknowns.iter().position(|&u| u == count);
        let zero = Fraction(0, 1);
        let mut rows: Vec<Vec<Fraction>> = tables
            .iter()
            .map(|table| {
                let mut row = vec![zero; unknowns.len()];
                let mut add = |count: CountId, sign: i128| {
                    if let Some(c) = column(count) {
                        row[c] = Fraction::new(row[c].0 + sign * row[c].1, row[c].1);
                    }
                };
                add(table.total, 1);
                for &part in &table.parts {
                    add(part, -1);
                }
                row
            })
            .collect();
        // Reduced row echelon form.
        let mut pivots = Vec::new();
        let mut top = 0;
        for c in 0..unknowns.len() {
            let Some(found) = (top..rows.len()).find(|&r| !rows[r][c].is_zero()) else {
                continue;
            };
            rows.swap(top, found);
            let pivot = rows[top][c];
            rows[top] = rows[top].iter().map(|v| v.div(pivot)).collect();
            for r in 0..rows.len() {
                if r != top && !rows[r][c].is_zero() {
                    let factor = rows[r][c];
                    let pivot_row = rows[top].clone();
                    for (value, p) in rows[r].iter_mut().zip(pivot_row) {
                        *value = value.sub_mul(factor, p);
                    }
                }
            }
            pivots.push((top, c));
            top += 1;
        }
        // A count is determined when its unit vector lies in the rows' span.
        unknowns
            .iter()
            .enumerate()
            .filter(|&(u, _)| {
                let mut target = vec![zero; unknowns.len()];
                target[u] = Fraction(1, 1);
                for &(r, c) in &pivots {
                    let factor = target[c];
                    if !factor.is_zero() {
                        for (value, p) in target.iter_mut().zip(&rows[r]) {
                            *value = value.sub_mul(factor, *p);
                        }
                    }
                }
                target.iter().all(|v| v.is_zero())
            })
            .map(|(_, &count)| count)
            .collect()
    }

    /// Every breakdown of `count` (itself, or through one of its tables), as lists of
    /// counts: enumerated, not optimised, to check the rule's search.
    pub(crate) fn breakdowns(count: CountId, tables: &[Table]) -> Vec<Vec<CountId>> {
        let mut all = vec![vec![count]];
        for table in tables.iter().filter(|t| t.total == count) {
            all.extend(breakdowns_through(table, tables));
        }
        all
    }

    pub(crate) fn breakdowns_through(table: &Table, tables: &[Table]) -> Vec<Vec<CountId>> {
        table.parts.iter().fold(vec![Vec::new()], |sofar, &part| {
            let options = breakdowns(part, tables);
            sofar
                .iter()
                .flat_map(|left| {
                    options
                        .iter()
                        .map(move |right| [left.as_slice(), right.as_slice()].concat())
                })
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::audit::{breakdowns_through, determined};
    use super::*;

    const T: i64 = 10;

    fn table(total: CountId, parts: impl IntoIterator<Item = CountId>) -> Table {
        Table {
            total,
            parts: parts.into_iter().collect(),
        }
    }

    fn withheld_ids(counts: &[i64], tables: &[Table]) -> Vec<CountId> {
        let withheld = withheld(counts, tables, T).expect("nested");
        assert_safe(counts, tables, &withheld);
        (0..counts.len()).filter(|&c| withheld[c]).collect()
    }

    /// What a reader of the shown counts cannot do: compute a withheld count by any
    /// combination of sums, or learn that some withheld counts together come to less
    /// than the threshold; and every small count is withheld.
    fn assert_safe(counts: &[i64], tables: &[Table], withheld: &[bool]) {
        for (c, &count) in counts.iter().enumerate() {
            assert!(
                count == 0 || count >= T || withheld[c],
                "{count} at {c} is shown"
            );
        }
        assert_eq!(
            determined(withheld, tables),
            Vec::<CountId>::new(),
            "withheld {withheld:?} of {counts:?}"
        );
        for table in tables.iter().filter(|t| !withheld[t.total]) {
            for breakdown in breakdowns_through(table, tables) {
                let hidden: Vec<_> = breakdown.iter().filter(|&&c| withheld[c]).collect();
                let shown: i64 = breakdown
                    .iter()
                    .filter(|&&c| !withheld[c])
                    .map(|&c| counts[c])
                    .sum();
                assert!(
                    hidden.is_empty() || (hidden.len() >= 2 && counts[table.total] - shown >= T),
                    "breakdown {breakdown:?} of {counts:?} shows too much (withheld {hidden:?})"
                );
            }
        }
    }

    #[test]
    fn one_small_cell_costs_exactly_the_smallest_other_cell() {
        // EES: 57 records, ages 0–11: 1, 12–17: 25, 18–29: 12, 30–49: 19.
        let counts = [57, 1, 25, 12, 19];
        let tables = [table(0, 1..5)];
        assert_eq!(withheld_ids(&counts, &tables), vec![1, 3]);
    }

    #[test]
    fn without_small_counts_nothing_is_withheld() {
        let counts = [57, 0, 25, 12, 20];
        assert_eq!(
            withheld_ids(&counts, &[table(0, 1..5)]),
            Vec::<usize>::new()
        );
    }

    #[test]
    fn two_small_cells_that_together_stay_small_need_a_third() {
        // 3 + 4 = 7 would be revealed as the total minus the shown cells.
        let counts = [60, 3, 4, 33, 20];
        assert_eq!(withheld_ids(&counts, &[table(0, 1..5)]), vec![1, 2, 4]);
    }

    #[test]
    fn small_cells_that_together_reach_the_threshold_need_nothing_more() {
        let counts = [60, 6, 5, 29, 20];
        assert_eq!(withheld_ids(&counts, &[table(0, 1..5)]), vec![1, 2]);
    }

    #[test]
    fn a_small_total_is_withheld_with_its_cells() {
        let counts = [7, 5, 2, 0];
        assert_eq!(withheld_ids(&counts, &[table(0, 1..4)]), vec![0, 1, 2]);
    }

    #[test]
    fn zeros_are_shown_and_never_used_as_complements() {
        let counts = [31, 1, 0, 0, 30];
        assert_eq!(withheld_ids(&counts, &[table(0, 1..5)]), vec![1, 4]);
    }

    #[test]
    fn a_single_part_equal_to_its_total_goes_with_it() {
        // All (0) = A (1) + X (2, small); A = B (3), its only part; B = 4 + 5 (small).
        // Once A is withheld to hide X, B must go too, or A would be read off B.
        let counts = [45, 40, 5, 40, 39, 1];
        let tables = [table(0, [1, 2]), table(1, [3]), table(3, [4, 5])];
        assert_eq!(withheld_ids(&counts, &tables), vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn nested_totals_protect_through_every_level() {
        // All systems (0) = EES (1) + VIS (2); EES = bands 3, 4; VIS = band 5.
        // VIS's 1 needs EES withheld at the top; EES withheld needs a band withheld; and
        // "all minus EES's shown band" must not reveal VIS and the small band together.
        let counts = [100, 99, 1, 95, 4, 1];
        let tables = [table(0, [1, 2]), table(1, [3, 4]), table(2, [5])];
        assert_eq!(withheld_ids(&counts, &tables), vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn nested_totals_stop_at_the_level_that_needs_it() {
        // All (0) = EES (1) + VIS (2) + SIS (3); EES = bands 4, 5 (0–11: 2 small).
        // The top table is already safe (SIS's 12 and EES's 50 are shown); only EES's bands
        // need a complement.
        let counts = [72, 50, 10, 12, 48, 2];
        let tables = [table(0, [1, 2, 3]), table(1, [4, 5])];
        assert_eq!(withheld_ids(&counts, &tables), vec![4, 5]);
    }

    #[test]
    fn a_total_with_two_breakdowns_protects_each() {
        // EES (0) by age band (1, 2, 3) and by nationality (4, 5, 6).
        let counts = [40, 1, 20, 19, 35, 3, 2];
        let tables = [table(0, [1, 2, 3]), table(0, [4, 5, 6])];
        assert_eq!(withheld_ids(&counts, &tables), vec![1, 3, 4, 5, 6]);
    }

    #[test]
    fn tables_that_do_not_nest_publish_nothing() {
        let counts = [20, 10, 10];
        assert_eq!(
            withheld(&counts, &[table(0, [1, 2]), table(1, [0])], T),
            Err(NotNested)
        );
        assert_eq!(
            withheld(&counts, &[table(0, [1, 2]), table(2, [1])], T),
            Err(NotNested)
        );
        assert_eq!(withheld(&counts, &[table(0, [3])], T), Err(NotNested));
    }

    #[test]
    fn the_audit_sees_what_total_minus_bands_shows() {
        // The audit itself: today's publication (only small counts withheld) gives the
        // suppressed band away.
        let counts = [57, 1, 25, 12, 19];
        let primary: Vec<bool> = counts.iter().map(|&c| c > 0 && c < T).collect();
        assert_eq!(determined(&primary, &[table(0, 1..5)]), vec![1]);
    }

    #[test]
    fn random_nested_publications_are_safe() {
        // A small xorshift: reproducible populations of every shape, many with small cells.
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = |bound: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % bound
        };
        for _ in 0..300 {
            // A top total over up to 4 systems, each with up to 2 breakdowns of up to 5.
            let mut counts = vec![0_i64];
            let mut tables = vec![table(0, [])];
            for _ in 0..=next(3) {
                let system = counts.len();
                counts.push(0);
                tables[0].parts.push(system);
                let cells: Vec<i64> = (0..=next(4))
                    .map(|_| match next(3) {
                        0 => next(10) as i64,
                        _ => next(60) as i64,
                    })
                    .collect();
                let total: i64 = cells.iter().sum();
                counts[system] = total;
                for _ in 0..=next(1) {
                    let mut parts = Vec::new();
                    // A second breakdown: the same total split another way.
                    let mut left = total;
                    for (i, _) in cells.iter().enumerate() {
                        let cell = if i + 1 == cells.len() {
                            left
                        } else {
                            (next(left as u64 + 1) as i64).min(left)
                        };
                        left -= cell;
                        parts.push(counts.len());
                        counts.push(cell);
                    }
                    tables.push(table(system, parts));
                }
            }
            counts[0] = tables[0].parts.iter().map(|&s| counts[s]).sum();
            withheld_ids(&counts, &tables);
        }
    }
}
