//! The dashboard file format, `dashboards/<name>.toml`: a title, defaults for the page's
//! controls (auto-refresh interval, time range, top N), and charts, each a read-only SQL query
//! over the lake plus a kind and the columns it draws.
//!
//! ```toml
//! title = "Clickstream"
//! refresh = "30s"       # auto-refresh (the page's picker starts here; "off": none)
//! range = "all"         # the time range picker's start: "all" or a duration ("24h", "7 days")
//! top = 10              # N of top-N charts (the page's slider starts here)
//!
//! [[chart]]
//! name = "views"
//! title = "Page views per minute"
//! kind = "line"         # line | area | bar | table | kpi | top
//! sql = "SELECT window_start, category, sum(view_count) AS views FROM gold.page_views WHERE window_start >= $from AND window_start < $to GROUP BY 1, 2 ORDER BY 1"
//! x = "window_start"    # line, area, bar: the x column
//! y = ["views"]         #   and the y columns
//! series = "category"   #   optional: one line per value of this column (one y column then)
//! ```
//!
//! A `kpi` shows `value` of the first row; a `top` lists `label` with `value` for the first N
//! rows (the query orders them); a `table` shows `columns` (default: all). `$from` and `$to`
//! are the time range's ends (timestamps, UTC); a query that does not name them ignores it.

use std::time::Duration;

use serde::Deserialize;

use crate::error::ConfigProblem;

/// A dashboard file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DashboardFile {
    pub title: String,
    #[serde(default)]
    pub description: String,
    /// The auto-refresh interval the page starts with (`"off"`: none).
    #[serde(default = "default_refresh")]
    pub refresh: String,
    /// The time range the page starts with: `"all"` or a duration back from now.
    #[serde(default = "default_range")]
    pub range: String,
    /// The N of top-N charts the page starts with.
    #[serde(default = "default_top")]
    pub top: usize,
    #[serde(rename = "chart", default)]
    pub charts: Vec<ChartDef>,
}

fn default_refresh() -> String {
    "30s".into()
}

fn default_range() -> String {
    "all".into()
}

fn default_top() -> usize {
    10
}

/// One chart: its query and how it is drawn.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChartDef {
    /// Its name in the dashboard (`/api/dashboards/<dashboard>/<name>`).
    pub name: String,
    pub title: String,
    pub kind: ChartKind,
    /// The query: one SELECT (or WITH … SELECT) over the lake's tables.
    #[serde(skip_serializing)]
    pub sql: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub y: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,
    /// Shown after the numbers (`"ms"`, `"%"`, `"$"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

/// How a chart is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChartKind {
    Line,
    Area,
    Bar,
    Table,
    Kpi,
    Top,
}

/// A dashboard, checked.
#[derive(Debug, Clone)]
pub struct Dashboard {
    /// The file name without `.toml`.
    pub name: String,
    /// The path shown in messages (`dashboards/clickstream.toml`).
    pub path: String,
    pub file: DashboardFile,
    /// `None`: no auto-refresh.
    pub refresh: Option<Duration>,
    /// `None`: all time.
    pub range: Option<Duration>,
}

impl Dashboard {
    /// Parses and checks a dashboard file: every problem, naming the file and the chart.
    pub fn parse(name: &str, path: &str, text: &str) -> Result<Self, Vec<ConfigProblem>> {
        let problem = |message: String| ConfigProblem::in_file(path, message);
        let file: DashboardFile = toml::from_str(text).map_err(|e| vec![problem(e.to_string())])?;
        let mut problems = Vec::new();
        let duration = |setting: &str, text: &str, none: &str| match text.trim() {
            t if t == none => Ok(None),
            t => humantime::parse_duration(t).map(Some).map_err(|e| {
                problem(format!(
                    "{setting} = {text:?}: {e} (a duration like \"30s\", or \"{none}\")"
                ))
            }),
        };
        let refresh = duration("refresh", &file.refresh, "off").unwrap_or_else(|p| {
            problems.push(p);
            None
        });
        let range = duration("range", &file.range, "all").unwrap_or_else(|p| {
            problems.push(p);
            None
        });
        if file.charts.is_empty() {
            problems.push(problem("no [[chart]]: a dashboard shows at least one chart".into()));
        }
        if file.top == 0 {
            problems.push(problem("top = 0: top-N charts show at least one row".into()));
        }
        for (i, chart) in file.charts.iter().enumerate() {
            let named = |message: String| problem(format!("chart `{}`: {message}", chart.name));
            if chart.name.is_empty()
                || !chart
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                problems.push(problem(format!(
                    "chart {} has name {:?}: use letters, digits, `_` and `-`",
                    i + 1,
                    chart.name
                )));
            }
            if file.charts[..i].iter().any(|c| c.name == chart.name) {
                problems.push(named("a second chart with this name".into()));
            }
            let missing = match chart.kind {
                ChartKind::Line | ChartKind::Area | ChartKind::Bar => {
                    let mut missing = Vec::new();
                    if chart.x.is_none() {
                        missing.push("x");
                    }
                    if chart.y.is_empty() {
                        missing.push("y");
                    }
                    if chart.series.is_some() && chart.y.len() > 1 {
                        problems.push(named("with `series`, give one `y` column".into()));
                    }
                    missing
                }
                ChartKind::Kpi => chart.value.is_none().then_some("value").into_iter().collect(),
                ChartKind::Top => [("label", chart.label.is_none()), ("value", chart.value.is_none())]
                    .into_iter()
                    .filter_map(|(name, absent)| absent.then_some(name))
                    .collect(),
                ChartKind::Table => Vec::new(),
            };
            if !missing.is_empty() {
                problems.push(named(format!(
                    "kind = \"{}\" needs {}",
                    kind_name(chart.kind),
                    missing.join(" and ")
                )));
            }
            if chart.sql.trim().is_empty() {
                problems.push(named("no sql".into()));
            }
        }
        if problems.is_empty() {
            Ok(Self {
                name: name.to_string(),
                path: path.to_string(),
                file,
                refresh,
                range,
            })
        } else {
            Err(problems)
        }
    }

    /// The chart named `name`.
    pub fn chart(&self, name: &str) -> Option<&ChartDef> {
        self.file.charts.iter().find(|c| c.name == name)
    }
}

impl ChartDef {
    /// The columns the chart draws, which its query must return.
    pub fn columns_drawn(&self) -> Vec<&str> {
        let mut columns: Vec<&str> = self.x.iter().map(String::as_str).collect();
        columns.extend(self.y.iter().map(String::as_str));
        columns.extend(self.series.as_deref());
        columns.extend(self.label.as_deref());
        columns.extend(self.value.as_deref());
        columns.extend(self.columns.iter().map(String::as_str));
        columns
    }
}

fn kind_name(kind: ChartKind) -> &'static str {
    match kind {
        ChartKind::Line => "line",
        ChartKind::Area => "area",
        ChartKind::Bar => "bar",
        ChartKind::Table => "table",
        ChartKind::Kpi => "kpi",
        ChartKind::Top => "top",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        Dashboard::parse("d", "dashboards/d.toml", text)
            .map(|_| Vec::new())
            .unwrap_or_else(|problems| problems.into_iter().map(|p| p.to_string()).collect())
    }

    #[test]
    fn a_dashboard_names_its_charts_queries_and_the_columns_they_draw() {
        let text = r#"
            title = "Clickstream"
            refresh = "10s"
            range = "7 days"
            [[chart]]
            name = "views"
            title = "Views"
            kind = "line"
            sql = "SELECT window_start, category, views FROM gold.page_views"
            x = "window_start"
            y = ["views"]
            series = "category"
            [[chart]]
            name = "total"
            title = "Total"
            kind = "kpi"
            sql = "SELECT 1 AS n"
            value = "n"
        "#;
        let dashboard = Dashboard::parse("clickstream", "dashboards/clickstream.toml", text).unwrap();
        assert_eq!(dashboard.refresh, Some(Duration::from_secs(10)));
        assert_eq!(dashboard.range, Some(Duration::from_secs(7 * 86400)));
        assert_eq!(dashboard.file.top, 10);
        assert_eq!(
            dashboard.chart("views").unwrap().columns_drawn(),
            ["window_start", "views", "category"]
        );
        assert!(dashboard.chart("nothing").is_none());
    }

    #[test]
    fn every_problem_of_a_dashboard_is_reported_with_its_file_and_chart() {
        let found = problems(
            r#"
            title = "Broken"
            refresh = "soon"
            [[chart]]
            name = "a"
            title = "A"
            kind = "line"
            sql = "SELECT 1"
            [[chart]]
            name = "a"
            title = "Again"
            kind = "top"
            sql = " "
            label = "x"
        "#,
        );
        let all = found.join("\n");
        assert!(all.contains("dashboards/d.toml"), "{all}");
        assert!(all.contains("refresh = \"soon\""), "{all}");
        assert!(all.contains("chart `a`: kind = \"line\" needs x and y"), "{all}");
        assert!(all.contains("chart `a`: a second chart with this name"), "{all}");
        assert!(all.contains("chart `a`: kind = \"top\" needs value"), "{all}");
        assert!(all.contains("chart `a`: no sql"), "{all}");
        assert_eq!(found.len(), 5, "{all}");

        let unknown =
            problems("title = \"t\"\n[[chart]]\nname = \"a\"\ntitle = \"A\"\nkind = \"pie\"\nsql = \"SELECT 1\"\n");
        assert!(unknown[0].contains("pie"), "{unknown:?}");
        assert!(problems("title = \"t\"\ncolour = \"red\"\n")[0].contains("colour"));
        assert!(problems("title = \"t\"\n")[0].contains("no [[chart]]"));
    }
}
