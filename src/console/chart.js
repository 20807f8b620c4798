// A live line chart over uPlot that follows its container's width.
import { html } from 'htm/preact';
import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';

/**
 * `data` is uPlot's column form: [times (s), series...]; `series` names and colours each series.
 * The plot is made once and fed new data; a ResizeObserver keeps it as wide as its box.
 */
export function LiveChart({ title, data, series }) {
  const box = useRef(null);
  const plot = useRef(null);
  useEffect(() => {
    const el = box.current;
    const opts = {
      width: Math.max(200, el.clientWidth),
      height: 180,
      legend: { show: false },
      scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, Math.max(1, max * 1.1)] } },
      axes: [{ stroke: '#444' }, { stroke: '#444', size: 56 }],
      series: [{}, ...series.map((s) => ({ label: s.label, stroke: s.color, width: 2, points: { show: false } }))],
    };
    plot.current = new uPlot(opts, data, el);
    const ro = new ResizeObserver(() => plot.current?.setSize({ width: Math.max(200, el.clientWidth), height: 180 }));
    ro.observe(el);
    return () => {
      ro.disconnect();
      plot.current?.destroy();
      plot.current = null;
    };
  }, []);
  useEffect(() => {
    plot.current?.setData(data);
  }, [data]);
  // what is plotted, for readers that cannot see the canvas (and for tests)
  const latest = data[1].length ? data[1][data[1].length - 1] : undefined;
  return html`<figure class="chart card" data-points=${data[0].length} data-peak=${Math.max(0, ...data[1])}>
    <figcaption>${title}${latest === undefined ? '' : html`: <span class="now">${latest.toFixed(1)}</span>`}</figcaption>
    <div ref=${box} role="img" aria-label=${`${title}, live chart`}></div>
  </figure>`;
}
