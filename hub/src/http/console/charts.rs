//! Plots as inline SVG, drawn on the server: no script, nothing fetched, CSP-clean (only
//! presentation attributes, no `style`).

use maud::{Markup, html};

use crate::core::Shown;

const WIDTH: f64 = 640.0;
const BAR: f64 = 22.0;
const GAP: f64 = 8.0;
const LABEL: f64 = 150.0;

/// The colour a link colour is drawn in.
pub(super) fn fill_of(colour: &str) -> &'static str {
    match colour {
        "white" => "#d9d9d9",
        "yellow" => "#e6b800",
        "green" => "#2e8b57",
        "red" => "#c0392b",
        _ => "#4a6fa5",
    }
}

/// Horizontal bars, one per published count, with the count written beside each; a
/// withheld count gets no bar and reads `withheld` (`<10`).
pub(super) fn bars(
    title: &str,
    items: &[Shown],
    withheld: &str,
    fill: &dyn Fn(&str) -> &'static str,
) -> Markup {
    let max = items
        .iter()
        .filter_map(|s| s.count)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let height = (items.len() as f64) * (BAR + GAP) + GAP;
    let span = WIDTH - LABEL - 60.0;
    html! {
        svg class="chart" role="img" aria-label=(title) width=(WIDTH) height=(height)
            viewBox=(format!("0 0 {WIDTH} {height}")) xmlns="http://www.w3.org/2000/svg" {
            title { (title) }
            @for (i, item) in items.iter().enumerate() {
                @let y = GAP + i as f64 * (BAR + GAP);
                @let w = (item.count.unwrap_or(0) as f64 / max) * span;
                @let text = shown(item.count, withheld);
                text x=(LABEL - 8.0) y=(y + BAR * 0.7) text-anchor="end" font-size="13" { (item.label) }
                @if item.count.is_some() {
                    rect x=(LABEL) y=(y) width=(w.max(1.0)) height=(BAR) fill=(fill(&item.label)) stroke="#555" stroke-width="0.5" {}
                }
                text x=(LABEL + w + 6.0) y=(y + BAR * 0.7) font-size="13" data-row=(item.row) data-count=(text) { (text) }
            }
        }
    }
}

/// Columns over a series of buckets, each column stacked from its published counts; a
/// withheld count adds nothing to its column's height.
pub(super) fn stacked_columns(
    title: &str,
    buckets: &[(String, Vec<Shown>)],
    withheld: &str,
    fill: &dyn Fn(&str) -> &'static str,
) -> Markup {
    let height = 220.0;
    let base = height - 30.0;
    let max = buckets
        .iter()
        .map(|(_, parts)| parts.iter().filter_map(|s| s.count).sum::<i64>())
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let step = (WIDTH - 40.0) / (buckets.len().max(1) as f64);
    let column = (step * 0.7).max(2.0);
    html! {
        svg class="chart" role="img" aria-label=(title) width=(WIDTH) height=(height)
            viewBox=(format!("0 0 {WIDTH} {height}")) xmlns="http://www.w3.org/2000/svg" {
            title { (title) }
            line x1="30" y1=(base) x2=(WIDTH) y2=(base) stroke="#888" {}
            text x="26" y="16" text-anchor="end" font-size="11" { (max as i64) }
            @for (i, (label, parts)) in buckets.iter().enumerate() {
                @let x = 34.0 + i as f64 * step;
                @let mut top = base;
                @for part in parts {
                    @let h = (part.count.unwrap_or(0) as f64 / max) * (base - 20.0);
                    @let y = { top -= h; top };
                    @let text = shown(part.count, withheld);
                    rect x=(x) y=(y) width=(column) height=(h.max(0.0)) fill=(fill(&part.label)) stroke="#555" stroke-width="0.4"
                        data-row=(part.row) data-count=(text) {
                        title { (format!("{label}: {text} {}", part.label)) }
                    }
                }
                @if buckets.len() <= 16 || i % 4 == 0 {
                    text x=(x + column / 2.0) y=(height - 12.0) text-anchor="middle" font-size="10" { (label) }
                }
            }
        }
    }
}

/// A published count as written: the number, or `withheld` when it is withheld.
pub(super) fn shown(count: Option<i64>, withheld: &str) -> String {
    count.map_or_else(|| withheld.to_owned(), |c| c.to_string())
}
