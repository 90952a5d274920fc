/**
 * The counter and histogram of src/ops/hotMetrics.ts must expose exactly what prom-client's own would
 * for the same observations: the same samples in the Prometheus text format of a prom-client Registry.
 */
import { Counter, Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { HotCounter, HotHistogram } from '../../src/ops/hotMetrics.ts';

/** `name{labels} value` lines of an exposition, as a map (label order normalised). */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line.trim() === '') continue;
    const match = /^([^{ ]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match) throw new Error(`unparsed line ${line}`);
    const labels = (match[2] ?? '').split(/,(?=[a-z_]+=")/).filter(Boolean).sort().join(',');
    out.set(`${match[1]}{${labels}}`, Number(match[3]));
  }
  return out;
}

describe('hot metrics', () => {
  const buckets = [0.001, 0.005, 0.01, 0.1, 1];
  const observations: Array<[string, string, number]> = [
    ['/a', 'GET', 0.0004],
    ['/a', 'GET', 0.001],
    ['/a', 'GET', 0.003],
    ['/a', 'POST', 0.2],
    ['/b', 'GET', 5],
    ['/b', 'GET', 0.01],
  ];

  it('a histogram exposes the same samples as prom-client', async () => {
    const ours = new Registry();
    const theirs = new Registry();
    const hot = new HotHistogram('x_seconds', 'help', ['route', 'method'], buckets, [ours]);
    const reference = new Histogram({ name: 'x_seconds', help: 'help', labelNames: ['route', 'method'], buckets, registers: [theirs] });
    for (const [route, method, value] of observations) {
      hot.labels(route, method).observe(value);
      reference.labels(route, method).observe(value);
    }
    expect(samples(await ours.metrics())).toEqual(samples(await theirs.metrics()));
    expect(await ours.metrics()).toContain('# TYPE x_seconds histogram');
  });

  it('a counter exposes the same samples as prom-client, by child and by label object', async () => {
    const ours = new Registry();
    const theirs = new Registry();
    const hot = new HotCounter('y_total', 'help', ['target', 'status'], [ours]);
    const reference = new Counter({ name: 'y_total', help: 'help', labelNames: ['target', 'status'], registers: [theirs] });
    hot.labels('api', '200').inc();
    hot.labels('api', '200').inc(2);
    hot.inc({ target: 'api', status: '502' });
    reference.labels('api', '200').inc(3);
    reference.inc({ target: 'api', status: '502' });
    expect(samples(await ours.metrics())).toEqual(samples(await theirs.metrics()));
    expect(await ours.metrics()).toContain('# TYPE y_total counter');
  });

  it('caps its label sets: past 10,000, new ones share an overflow child', async () => {
    const registry = new Registry();
    const hot = new HotCounter('z_total', 'help', ['route'], [registry]);
    for (let i = 0; i < 10_050; i++) hot.labels(`/r${i}`).inc();
    const exposed = samples(await registry.metrics());
    expect(exposed.size).toBe(10_001);
    expect(exposed.get('z_total{route="overflow"}')).toBe(50);
  });
});
