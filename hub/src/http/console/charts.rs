//! Plots as inline SVG, drawn on the server: no script, nothing fetched, CSP-clean (only
//! presentation attributes, no `style`).

use maud::{Markup, html};

const WIDTH: f64 = 640.0;
const BAR: f64 = 22.0;
const GAP: f64 = 8.0;
const LABEL: f64 = 150.0;

/// The colour a link colour is drawn in.
pub fn fill_of(colour: &str) -> &'static str {
    match colour {
        "white" => "#d9d9d9",
        "yellow" => "#e6b800",
        "green" => "#2e8b57",
        "red" => "#c0392b",
        _ => "#4a6fa5",
    }
}

/// Horizontal bars, one per (label, value), with the value written beside each.
pub fn bars(title: &str, items: &[(String, i64)], fill: &dyn Fn(&str) -> &'static str) -> Markup {
    let max = items.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1) as f64;
    let height = (items.len() as f64) * (BAR + GAP) + GAP;
    let span = WIDTH - LABEL - 60.0;
    html! {
        svg class="chart" role="img" aria-label=(title) width=(WIDTH) height=(height)
            viewBox=(format!("0 0 {WIDTH} {height}")) xmlns="http://www.w3.org/2000/svg" {
            title { (title) }
            @for (i, (label, value)) in items.iter().enumerate() {
                @let y = GAP + i as f64 * (BAR + GAP);
                @let w = (*value as f64 / max) * span;
                text x=(LABEL - 8.0) y=(y + BAR * 0.7) text-anchor="end" font-size="13" { (label) }
                rect x=(LABEL) y=(y) width=(w.max(1.0)) height=(BAR) fill=(fill(label)) stroke="#555" stroke-width="0.5" {}
                text x=(LABEL + w + 6.0) y=(y + BAR * 0.7) font-size="13" { (value) }
            }
        }
    }
}

/// Columns over a series of buckets, each column stacked from (series, value) parts.
pub fn stacked_columns(
    title: &str,
    buckets: &[(String, Vec<(String, i64)>)],
    fill: &dyn Fn(&str) -> &'static str,
) -> Markup {
    let height = 220.0;
    let base = height - 30.0;
    let max = buckets
        .iter()
        .map(|(_, parts)| parts.iter().map(|(_, v)| *v).sum::<i64>())
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
                @for (series, value) in parts {
                    @let h = (*value as f64 / max) * (base - 20.0);
                    @let y = { top -= h; top };
                    rect x=(x) y=(y) width=(column) height=(h.max(0.0)) fill=(fill(series)) stroke="#555" stroke-width="0.4" {
                        title { (format!("{label}: {value} {series}")) }
                    }
                }
                @if buckets.len() <= 16 || i % 4 == 0 {
                    text x=(x + column / 2.0) y=(height - 12.0) text-anchor="middle" font-size="10" { (label) }
                }
            }
        }
    }
}
