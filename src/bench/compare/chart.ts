/**
 * A hand-written SVG of the compare results: throughput per phase (linear scale) and latency
 * percentiles (log scale), one bar colour per row, a legend line per row with its caps. Opens in
 * any browser.
 */

/** One system's bars, in the order of the panel's groups. */
export interface Series {
  name: string;
  values: (number | null)[];
}

interface Panel {
  title: string;
  groups: string[];
  series: Series[];
  log: boolean;
  unit: string;
}

const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"];
const PANEL_W = 560;
const PANEL_H = 360;

function esc(s: string): string {
  return s.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;").replaceAll('"', "&quot;");
}

function label(v: number): string {
  if (v >= 10_000) return `${(v / 1000).toFixed(0)}k`;
  if (v >= 1000) return `${(v / 1000).toFixed(1)}k`;
  if (v >= 100) return v.toFixed(0);
  if (v >= 10) return v.toFixed(1);
  return v.toFixed(2);
}

function tickLabel(v: number): string {
  if (v >= 1000) return `${Number((v / 1000).toPrecision(3))}k`;
  return String(Number(v.toPrecision(3)));
}

function panel(p: Panel, x0: number, y0: number): string {
  const left = 64;
  const top = 40;
  const bottom = 48;
  const plotW = PANEL_W - left - 16;
  const plotH = PANEL_H - top - bottom;
  const values = p.series.flatMap((s) => s.values).filter((v): v is number => v !== null && v > 0);
  const maxV = Math.max(1, ...values);
  let scale: (v: number) => number;
  let ticks: number[];
  if (p.log) {
    const minExp = Math.floor(Math.log10(Math.max(0.1, Math.min(...values, maxV))));
    const maxExp = Math.ceil(Math.log10(maxV));
    const span = Math.max(1, maxExp - minExp);
    scale = (v) => (Math.max(0, Math.log10(Math.max(v, 10 ** minExp)) - minExp) / span) * plotH;
    ticks = Array.from({ length: span + 1 }, (_, i) => 10 ** (minExp + i));
  } else {
    const step = 10 ** Math.floor(Math.log10(maxV));
    const top1 = Math.ceil(maxV / step) * step;
    scale = (v) => (v / top1) * plotH;
    ticks = Array.from({ length: 6 }, (_, i) => (top1 * i) / 5);
  }
  const out: string[] = [`<g transform="translate(${x0},${y0})">`];
  out.push(
    `<text x="${PANEL_W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${esc(p.title)}</text>`,
  );
  for (const t of ticks) {
    const y = top + plotH - scale(t);
    out.push(`<line x1="${left}" x2="${left + plotW}" y1="${y}" y2="${y}" stroke="#ddd"/>`);
    out.push(`<text x="${left - 6}" y="${y + 4}" text-anchor="end" font-size="11">${tickLabel(t)}</text>`);
  }
  out.push(
    `<text x="14" y="${top + plotH / 2}" font-size="11" transform="rotate(-90 14 ${top + plotH / 2})" text-anchor="middle">${esc(p.unit)}${p.log ? " (log)" : ""}</text>`,
  );
  const groupW = plotW / p.groups.length;
  const barW = Math.min(40, (groupW * 0.8) / Math.max(1, p.series.length));
  p.groups.forEach((g, gi) => {
    const gx = left + gi * groupW + (groupW - barW * p.series.length) / 2;
    p.series.forEach((s, si) => {
      const v = s.values[gi];
      const x = gx + si * barW;
      if (v === null || v === undefined) {
        out.push(
          `<text x="${x + barW / 2}" y="${top + plotH - 4}" text-anchor="middle" font-size="10">n/a</text>`,
        );
        return;
      }
      const h = Math.max(1, scale(v));
      const color = COLORS[si % COLORS.length];
      out.push(
        `<rect x="${x}" y="${top + plotH - h}" width="${barW - 2}" height="${h}" fill="${color}"><title>${esc(`${s.name} ${g}: ${v}`)}</title></rect>`,
      );
      out.push(
        `<text x="${x + barW / 2 - 1}" y="${top + plotH - h - 3}" text-anchor="middle" font-size="10">${label(v)}</text>`,
      );
    });
    out.push(
      `<text x="${left + gi * groupW + groupW / 2}" y="${top + plotH + 16}" text-anchor="middle" font-size="12">${esc(g)}</text>`,
    );
  });
  out.push(`<line x1="${left}" x2="${left + plotW}" y1="${top + plotH}" y2="${top + plotH}" stroke="#333"/>`);
  out.push("</g>");
  return out.join("\n");
}

/** The whole chart: title, subtitle, throughput and latency panels, a legend line per series, notes. */
export function compareChart(options: {
  title: string;
  subtitle: string;
  /** One line per series, in series order (name and caps). */
  legend: string[];
  /** Lines under the legend (how the phases were run). */
  notes: string[];
  throughput: { groups: string[]; series: Series[] };
  latency: { groups: string[]; series: Series[] };
}): string {
  const width = PANEL_W * 2 + 40;
  const legendTop = PANEL_H + 80;
  const lineH = 18;
  const height = legendTop + (options.legend.length + options.notes.length) * lineH + 20;
  const legend = options.legend
    .map((text, i) => {
      const y = legendTop + i * lineH;
      return (
        `<rect x="20" y="${y - 11}" width="12" height="12" fill="${COLORS[i % COLORS.length]}"/>` +
        `<text x="38" y="${y}" font-size="12">${esc(text)}</text>`
      );
    })
    .join("\n");
  const notes = options.notes
    .map(
      (text, i) =>
        `<text x="20" y="${legendTop + (options.legend.length + i) * lineH + 6}" font-size="11" fill="#555">${esc(text)}</text>`,
    )
    .join("\n");
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="20" y="28" font-size="18" font-weight="bold">${esc(options.title)}</text>`,
    `<text x="20" y="48" font-size="12" fill="#555">${esc(options.subtitle)}</text>`,
    panel({ title: "Throughput", unit: "messages/s", log: false, ...options.throughput }, 10, 60),
    panel(
      { title: "Enqueue-call-to-handler latency", unit: "ms", log: true, ...options.latency },
      PANEL_W + 30,
      60,
    ),
    legend,
    notes,
    "</svg>",
    "",
  ].join("\n");
}
