//! Turning samples into the tables of BENCHMARKS.md and the chart beside it.

use std::fmt::Write as _;

/// The repeated measurements of one metric for one init.
#[derive(Clone, Debug, Default)]
pub struct Samples(pub Vec<f64>);

impl Samples {
    pub fn median(&self) -> Option<f64> {
        let mut sorted = self.0.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        match n {
            0 => None,
            _ if n % 2 == 1 => Some(sorted[n / 2]),
            _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
        }
    }

    pub fn min(&self) -> Option<f64> {
        self.0.iter().copied().reduce(f64::min)
    }

    pub fn max(&self) -> Option<f64> {
        self.0.iter().copied().reduce(f64::max)
    }

    /// The p-th percentile (nearest rank), 0 < p <= 100.
    pub fn percentile(&self, p: f64) -> Option<f64> {
        let mut sorted = self.0.clone();
        sorted.sort_by(f64::total_cmp);
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        sorted.get(rank.saturating_sub(1)).copied()
    }
}

/// One row of a table: a metric, what it is measured with, and a value per init.
#[derive(Clone)]
pub struct Row {
    pub metric: String,
    /// What the number is made of: "CPU time (schedstat)", "instructions (callgrind)", ...
    pub basis: &'static str,
    pub unit: &'static str,
    /// Lower is better (sizes, costs) or higher (throughput)?
    pub lower_is_better: bool,
    /// Per init, in the order of the header; `None` where it does not apply.
    pub values: Vec<Option<Samples>>,
    /// Text instead of a number, per init (e.g. "n/a: zombies pile up").
    pub notes: Vec<Option<String>>,
}

impl Row {
    pub fn new(
        metric: impl Into<String>,
        basis: &'static str,
        unit: &'static str,
        inits: usize,
    ) -> Row {
        Row {
            metric: metric.into(),
            basis,
            unit,
            lower_is_better: true,
            values: vec![None; inits],
            notes: vec![None; inits],
        }
    }

    pub fn higher_is_better(mut self) -> Row {
        self.lower_is_better = false;
        self
    }

    /// Adds one measurement for init number `init`.
    pub fn push(&mut self, init: usize, value: f64) {
        self.values[init]
            .get_or_insert_with(Samples::default)
            .0
            .push(value);
    }

    /// The same row under another title.
    pub fn titled(&self, metric: &str) -> Row {
        Row {
            metric: metric.into(),
            ..self.clone()
        }
    }

    pub fn median(&self, init: usize) -> Option<f64> {
        self.values.get(init)?.as_ref()?.median()
    }

    /// ferrinit's median over another init's, as "0.42×".
    pub fn ratio(&self, init: usize, reference: usize) -> Option<f64> {
        let (ours, theirs) = (self.median(init)?, self.median(reference)?);
        (theirs != 0.0).then(|| ours / theirs)
    }
}

pub fn number(value: f64) -> String {
    let abs = value.abs();
    if abs > 0.0 && abs < 0.01 {
        // Two significant digits: 0.000097, not 0.00.
        let decimals = (-abs.log10()).ceil() as usize + 1;
        return format!("{value:.decimals$}");
    }
    let text = if abs >= 100.0 || value == value.trunc() {
        format!("{value:.0}")
    } else if abs >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    };
    // Thousands separators for the integer part.
    let (int, frac) = text
        .split_once('.')
        .map_or((text.as_str(), None), |(i, f)| (i, Some(f)));
    let (sign, digits) = int.strip_prefix('-').map_or(("", int), |d| ("-", d));
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    match frac {
        Some(f) => format!("{sign}{grouped}.{f}"),
        None => format!("{sign}{grouped}"),
    }
}

fn cell(row: &Row, init: usize) -> String {
    if let Some(note) = &row.notes[init] {
        return note.clone();
    }
    let Some(samples) = &row.values[init] else {
        return "—".into();
    };
    let (Some(median), Some(min), Some(max)) = (samples.median(), samples.min(), samples.max())
    else {
        return "—".into();
    };
    if samples.0.len() == 1 || min == max {
        number(median)
    } else {
        format!("{} ({}–{})", number(median), number(min), number(max))
    }
}

fn ratio_text(ratio: Option<f64>) -> String {
    ratio.map_or("—".into(), |r| format!("{}×", number(r)))
}

/// A markdown table: one row per metric, one column per init, then ferrinit's ratios.
pub fn table(names: &[&str], rows: &[Row], reference: usize, limit: usize) -> String {
    let mut out = String::new();
    let _ = write!(out, "| metric | measured with |");
    for name in names {
        let _ = write!(out, " {name} |");
    }
    let _ = writeln!(
        out,
        " ferrinit ÷ {} | ferrinit ÷ {} |",
        names[reference], names[limit]
    );
    let _ = writeln!(out, "|{}", "---|".repeat(names.len() + 4));
    for row in rows {
        let _ = write!(out, "| {} ({}) | {} |", row.metric, row.unit, row.basis);
        for init in 0..names.len() {
            let _ = write!(out, " {} |", cell(row, init));
        }
        let _ = writeln!(
            out,
            " {} | {} |",
            ratio_text(row.ratio(0, reference)),
            ratio_text(row.ratio(0, limit))
        );
    }
    out
}

/// A goal from issue #12, judged on ferrinit's median.
#[derive(Clone, Copy, Debug)]
pub enum Goal {
    /// ferrinit's own value at most this (a count).
    AtMost(f64),
    /// ferrinit's value over tini-static's at most this.
    RatioAtMost(f64),
}

impl Goal {
    fn text(self, reference: &str) -> String {
        match self {
            Goal::AtMost(limit) => format!("≤ {}", number(limit)),
            Goal::RatioAtMost(limit) => format!("≤ {}× {reference}", number(limit)),
        }
    }

    /// "met (1.00)" or "**not met** (2.50)", the value judged in brackets.
    fn verdict(self, row: &Row, reference: usize) -> String {
        let (value, limit, suffix) = match self {
            Goal::AtMost(limit) => (row.median(0), limit, ""),
            Goal::RatioAtMost(limit) => (row.ratio(0, reference), limit, "×"),
        };
        match value {
            None => "not measured".into(),
            // Compare what is printed: 1.150× meets ≤ 1.15×.
            Some(value)
                if number(value)
                    .replace(',', "")
                    .parse::<f64>()
                    .unwrap_or(value)
                    <= limit =>
            {
                format!("met ({}{suffix})", number(value))
            }
            Some(value) => format!("**not met** ({}{suffix})", number(value)),
        }
    }
}

/// The headline: ratios only (never absolute times, which belong to one machine), and each
/// goal of issue #12 with whether ferrinit meets it.
pub fn headline(
    names: &[&str],
    rows: &[(Row, Option<Goal>)],
    reference: usize,
    floor: usize,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| metric | measured with | ferrinit ÷ {} | ferrinit ÷ {} | goal (#12) | goal met? |",
        names[reference], names[floor]
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for (row, goal) in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            row.metric,
            row.basis,
            ratio_text(row.ratio(0, reference)),
            ratio_text(row.ratio(0, floor)),
            goal.map_or("—".into(), |g| g.text(names[reference])),
            goal.map_or("—".into(), |g| g.verdict(row, reference)),
        );
    }
    out
}

/// A horizontal bar chart of each init's median over tini-static's, per metric: shorter bars
/// are better for costs, longer for throughput (marked).
pub fn svg(names: &[&str], rows: &[&Row], reference: usize) -> String {
    let colors = [
        "#d9480f", "#1971c2", "#2f9e44", "#7048e8", "#495057", "#868e96",
    ];
    let (label_width, bar_width, bar_height, gap) = (330.0, 420.0, 12.0, 10.0);
    let shown: Vec<usize> = (0..names.len()).filter(|&i| i != names.len() - 1).collect();
    let group = shown.len() as f64 * bar_height + gap;
    let height = 60.0 + rows.len() as f64 * group;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{height}" font-family="sans-serif" font-size="11">"#,
        label_width + bar_width + 90.0
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="10" y="18" font-size="13" font-weight="bold">Each init relative to {} (= 1, dashed line); lower is better unless marked ↑</text>"#,
        names[reference]
    );
    for (k, &i) in shown.iter().enumerate() {
        let _ = writeln!(
            out,
            r#"<rect x="{}" y="28" width="10" height="10" fill="{}"/><text x="{}" y="37">{}</text>"#,
            10.0 + k as f64 * 100.0,
            colors[i % colors.len()],
            24.0 + k as f64 * 100.0,
            names[i]
        );
    }
    // The scale: 0 to the largest ratio shown, at least 2.
    let max_ratio = rows
        .iter()
        .flat_map(|row| shown.iter().filter_map(|&i| row.ratio(i, reference)))
        .fold(2.0f64, f64::max)
        .min(20.0);
    let x_of = |ratio: f64| label_width + bar_width * (ratio.min(max_ratio) / max_ratio);
    for (r, row) in rows.iter().enumerate() {
        let top = 50.0 + r as f64 * group;
        let arrow = if row.lower_is_better { "" } else { " ↑" };
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="end">{}{arrow}</text>"#,
            label_width - 8.0,
            top + group / 2.0,
            escape(&row.metric)
        );
        for (k, &i) in shown.iter().enumerate() {
            let Some(ratio) = row.ratio(i, reference) else {
                continue;
            };
            let y = top + k as f64 * bar_height;
            let _ = writeln!(
                out,
                r#"<rect x="{label_width}" y="{y}" width="{:.1}" height="{:.1}" fill="{}"/><text x="{:.1}" y="{:.1}">{}×</text>"#,
                x_of(ratio) - label_width,
                bar_height - 2.0,
                colors[i % colors.len()],
                x_of(ratio) + 3.0,
                y + bar_height - 3.0,
                number(ratio)
            );
        }
    }
    let one = x_of(1.0);
    let _ = writeln!(
        out,
        r#"<line x1="{one}" y1="45" x2="{one}" y2="{}" stroke="black" stroke-dasharray="4 3"/>"#,
        height - 5.0
    );
    out.push_str("</svg>\n");
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics() {
        let s = Samples(vec![5.0, 1.0, 3.0, 2.0]);
        assert_eq!(s.median(), Some(2.5));
        assert_eq!((s.min(), s.max()), (Some(1.0), Some(5.0)));
        assert_eq!(
            Samples((1..=100).map(f64::from).collect()).percentile(99.0),
            Some(99.0)
        );
        assert_eq!(Samples(vec![]).median(), None);
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(number(1_050_200.0), "1,050,200");
        assert_eq!(number(0.4167), "0.42");
        assert_eq!(number(12.345), "12.3");
        assert_eq!(number(-1234.0), "-1,234");
        assert_eq!(number(0.0), "0");
        assert_eq!(number(0.000097), "0.000097");
        assert_eq!(number(0.0042), "0.0042");
    }
}
