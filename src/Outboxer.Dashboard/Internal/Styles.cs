namespace Outboxer.Dashboard.Internal;

/// <summary>The dashboard's one stylesheet, served by the dashboard itself (no font, image or script is fetched).</summary>
internal static class Styles
{
    public const string Css = """
        :root { color-scheme: light dark; --fg: #1b1f24; --bg: #fff; --muted: #57606a; --line: #d0d7de; --accent: #0a58ca; --warn: #9a3412; --card: #f6f8fa; }
        @media (prefers-color-scheme: dark) { :root { --fg: #e6edf3; --bg: #0d1117; --muted: #9198a1; --line: #30363d; --accent: #58a6ff; --warn: #f0883e; --card: #161b22; } }
        * { box-sizing: border-box; }
        body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
        a { color: var(--accent); }
        a:focus-visible, button:focus-visible, input:focus-visible, summary:focus-visible, [tabindex]:focus-visible { outline: 3px solid var(--accent); outline-offset: 2px; }
        .skip { position: absolute; left: -9999px; }
        .skip:focus { left: 1rem; top: 1rem; background: var(--bg); padding: .5rem; z-index: 1; }
        header { border-bottom: 1px solid var(--line); padding: .5rem 1rem; }
        header nav { display: flex; flex-wrap: wrap; gap: .25rem 1rem; align-items: center; }
        header ul { display: flex; flex-wrap: wrap; gap: .25rem .75rem; list-style: none; margin: 0; padding: 0; }
        .brand { font-weight: 700; text-decoration: none; color: var(--fg); }
        [aria-current="page"] { font-weight: 700; }
        .badge { border: 1px solid var(--muted); color: var(--muted); border-radius: 1rem; padding: 0 .5rem; font-size: .85em; }
        main { padding: 1rem; max-width: 80rem; }
        h1 { font-size: 1.4rem; margin: .25rem 0 1rem; }
        h2 { font-size: 1.2rem; margin: 0 0 .5rem; }
        h3 { font-size: 1rem; margin: 1rem 0 .25rem; }
        h3 small { font-weight: 400; color: var(--muted); }
        .outbox { border: 1px solid var(--line); border-radius: .5rem; padding: 1rem; margin-bottom: 1rem; }
        .figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(9rem, 1fr)); gap: .5rem; margin: 0 0 1rem; }
        .figure { background: var(--card); border-radius: .4rem; padding: .5rem .75rem; }
        .figure dt { color: var(--muted); font-size: .85em; }
        .figure dd { margin: 0; font-size: 1.4rem; font-variant-numeric: tabular-nums; }
        .figure.warn dd { color: var(--warn); }
        .status-items { display: grid; grid-template-columns: max-content 1fr; gap: .25rem 1rem; margin: 0 0 1rem; }
        .status-item { display: contents; }
        .status-item dt { color: var(--muted); }
        .status-item dd { margin: 0; overflow-wrap: anywhere; font-variant-numeric: tabular-nums; }
        .status-item.problem dt, .status-item.problem dd { color: var(--warn); font-weight: 600; }
        .charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(16rem, 1fr)); gap: .75rem; }
        .chart { margin: 0; }
        .chart svg { width: 100%; height: 5rem; background: var(--card); border-radius: .4rem; }
        .chart polyline { stroke: var(--accent); stroke-width: 1.5; vector-effect: non-scaling-stroke; }
        .chart circle { fill: var(--accent); }
        .chart .axis { stroke: var(--line); vector-effect: non-scaling-stroke; }
        .chart figcaption { font-size: .85em; color: var(--muted); }
        .table { overflow-x: auto; }
        table { border-collapse: collapse; width: 100%; }
        th, td { text-align: left; vertical-align: top; padding: .4rem .5rem; border-bottom: 1px solid var(--line); }
        .num { text-align: right; font-variant-numeric: tabular-nums; }
        pre { white-space: pre-wrap; word-break: break-all; background: var(--card); padding: .5rem; border-radius: .4rem; max-height: 24rem; overflow: auto; margin: .25rem 0; font-size: .85em; }
        .last-error { margin: 0 0 .25rem; max-width: 40rem; overflow-wrap: anywhere; }
        dl.fields, dl.values { display: grid; grid-template-columns: max-content 1fr; gap: .25rem 1rem; }
        dl.fields dd, dl.values dd { margin: 0; overflow-wrap: anywhere; }
        dl.values dt { font-family: ui-monospace, monospace; }
        .error { color: var(--warn); }
        .done { border-left: 4px solid var(--accent); padding-left: .5rem; }
        .empty, .note { color: var(--muted); }
        button, .button { font: inherit; padding: .35rem .8rem; border-radius: .4rem; border: 1px solid var(--line); background: var(--card); color: var(--fg); cursor: pointer; text-decoration: none; display: inline-block; }
        .danger { border-color: var(--warn); color: var(--warn); }
        .actions, .pages, .links, .row-actions { display: flex; flex-wrap: wrap; gap: .5rem; }
        .search input { font: inherit; padding: .3rem; min-width: min(22rem, 100%); }
        .visually-hidden { position: absolute; width: 1px; height: 1px; overflow: hidden; clip-path: inset(50%); white-space: nowrap; }
        @media (max-width: 40rem) { main { padding: .5rem; } .figure dd { font-size: 1.15rem; } th, td { padding: .3rem; } }
        """;
}
