// The real OpenTelemetry JS Jaeger remote sampler, polling a spansieve query server, so
// that tests/integration/test_query_sampling.py checks what an SDK does with our
// /api/sampling answers (not only their JSON).
//
//   node tests/sdk/remote_sampler.mjs <endpoint> <service> <pollingMs> <operation>... [--samples N]
//
// The sampler starts with AlwaysOff and polls `<endpoint>/sampling?service=<service>`
// every pollingMs (its own timer, as in an application). Each measurement asks it for
// N root-span decisions per operation name (trace ids from SHA-256 of a counter, so runs
// repeat exactly) and prints one JSON line:
//   {"sampler": "<its toString()>", "fractions": {"<operation>": <share sampled>, ...}}
// One measurement is printed at once, before the first poll can have run; then one per
// line read on stdin, taken two polling intervals after the line came (so at least one
// poll started after it). End of stdin ends the process (the sampler's timer would keep
// it alive).
import { createHash } from 'node:crypto';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';

import { DiagConsoleLogger, DiagLogLevel, ROOT_CONTEXT, SpanKind, diag } from '@opentelemetry/api';
import { JaegerRemoteSampler } from '@opentelemetry/sampler-jaeger-remote';
import { AlwaysOffSampler, SamplingDecision } from '@opentelemetry/sdk-trace';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { samples: { type: 'string', default: '20000' } },
});
const [endpoint, serviceName, pollingText, ...operations] = positionals;
const pollingMs = Number(pollingText);
const samples = Number(values.samples);
if (!endpoint || !serviceName || !(pollingMs > 0) || operations.length === 0 || !(samples > 0)) {
  console.error(
    'usage: remote_sampler.mjs <endpoint> <service> <pollingMs> <operation>... [--samples N]',
  );
  process.exit(2);
}

// A failed poll is only a diag warning in the sampler: show it on stderr.
diag.setLogger(new DiagConsoleLogger(), DiagLogLevel.WARN);

const sampler = new JaegerRemoteSampler({
  endpoint,
  serviceName,
  poolingInterval: pollingMs, // sic: the package's option name
  initialSampler: new AlwaysOffSampler(),
});

let round = 0;

function traceId(operation, index) {
  return createHash('sha256').update(`${round}/${operation}/${index}`).digest('hex').slice(0, 32);
}

function measure() {
  round += 1;
  const fractions = {};
  for (const operation of operations) {
    let sampled = 0;
    for (let index = 0; index < samples; index += 1) {
      const id = traceId(operation, index);
      const result = sampler.shouldSample(ROOT_CONTEXT, id, operation, SpanKind.SERVER, {}, []);
      if (result.decision === SamplingDecision.RECORD_AND_SAMPLED) sampled += 1;
    }
    fractions[operation] = sampled / samples;
  }
  process.stdout.write(`${JSON.stringify({ sampler: String(sampler), fractions })}\n`);
}

measure();
for await (const _line of createInterface({ input: process.stdin })) {
  await sleep(2 * pollingMs);
  measure();
}
process.exit(0);
