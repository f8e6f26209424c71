#!/usr/bin/env node
// The `cloudevents` npm SDK as a client of factlog's HTTP gateway, driven by the pytest suite.
//
//   node ce.js send URL binary|structured   stdin: a JSON array of event attribute objects
//       Builds each CloudEvent with the SDK, serializes it with HTTP.binary / HTTP.structured and POSTs
//       it with fetch (the SDK's own httpTransport hides the HTTP status: ecosystem.md gotcha 7).
//       Prints a JSON array of {status, content_type, body} on stdout, one per event, in order.
//   node ce.js parse URL
//       GETs URL (a partition read) and parses the answer with HTTP.toEvent. Prints a JSON array of the
//       events as the SDK understood them (attributes + data), or exits 1 with the SDK's error.
'use strict';
const { CloudEvent, HTTP } = require('cloudevents');

function readStdin() {
	return new Promise((resolve, reject) => {
		const chunks = [];
		process.stdin.on('data', (c) => chunks.push(c));
		process.stdin.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
		process.stdin.on('error', reject);
	});
}

async function send(url, mode) {
	const specs = JSON.parse(await readStdin());
	const out = [];
	for (const spec of specs) {
		const ev = new CloudEvent(spec); // validates against the CloudEvents 1.0 schema
		const msg = mode === 'binary' ? HTTP.binary(ev) : HTTP.structured(ev);
		const res = await fetch(url, {
			method: 'POST',
			headers: msg.headers,
			body: msg.body,
			signal: AbortSignal.timeout(15000),
		});
		out.push({ status: res.status, content_type: res.headers.get('content-type'), body: await res.text() });
	}
	return out;
}

async function parse(url) {
	const res = await fetch(url, { signal: AbortSignal.timeout(15000) });
	const headers = {};
	res.headers.forEach((v, k) => { headers[k] = v; });
	const body = await res.text();
	if (res.status !== 200)
		throw new Error(`GET ${url}: HTTP ${res.status}: ${body}`);
	let evs = HTTP.toEvent({ headers, body });
	if (!Array.isArray(evs))
		evs = [evs];
	return evs.map((e) => e.toJSON());
}

async function main() {
	const [cmd, url, mode] = process.argv.slice(2);
	let out;
	if (cmd === 'send' && (mode === 'binary' || mode === 'structured'))
		out = await send(url, mode);
	else if (cmd === 'parse')
		out = await parse(url);
	else
		throw new Error('usage: node ce.js send URL binary|structured < events.json | node ce.js parse URL');
	process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((e) => {
	process.stderr.write(`ce.js: ${e && e.stack ? e.stack : e}\n`);
	process.exit(1);
});
