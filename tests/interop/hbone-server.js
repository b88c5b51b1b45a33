#!/usr/bin/env node
// SPDX-License-Identifier: Apache-2.0
//
// hbone-server.js: an HBONE server (DESIGN.md §3) built only on Node.js's own
// `tls` and `http2` modules, standing in for a remote ztunnel's 15008 so the
// tests can check what ambientd's outbound side puts on the wire.
//
// TLS 1.3 only (AES-GCM suites, ALPN h2), client certificate required and
// chained to --ca. Every CONNECT stream is checked and answered like ztunnel
// does (400 malformed or authority IP not ours, 401 client identity not
// expected), then answered 200 and echoed: every byte goes back, and our
// END_STREAM follows the client's.
//
// Logs JSON lines on stdout:
//   {"event":"listening", ...}                       once, when ready
//   {"event":"connect", "authority", "forwarded", "clientIds", ...}  per CONNECT
//   {"event":"done", "authority", "bytes", "sha256"}   when a stream's echo ended
//   {"event":"tls-error" | "stream-error" | "session-error", "error", ...}
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const http2 = require('http2');

const TLS13_SUITES = 'TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384';
const STREAM_WINDOW = 4 << 20;
const CONN_WINDOW = 16 << 20;
const MAX_FRAME = 1 << 20;
const MAX_STREAMS = 200;

const USAGE = `usage: hbone-server.js --listen IP:PORT --cert FILE --key FILE --ca FILE
                       [--expect-client-id URI]... [--any-authority]
With --expect-client-id, a CONNECT from any other identity is answered 401.
Without --any-authority, an :authority IP other than the --listen IP gets 400.`;

function usageError(msg) {
	process.stderr.write(`hbone-server.js: ${msg}\n${USAGE}\n`);
	process.exit(2);
}

function parseArgs(argv) {
	const o = { clientIds: [], anyAuthority: false };
	const value = (i) => {
		if (i + 1 >= argv.length)
			usageError(`${argv[i]} needs a value`);
		return argv[i + 1];
	};
	for (let i = 0; i < argv.length; i++) {
		switch (argv[i]) {
		case '--listen': o.listen = value(i++); break;
		case '--cert': o.cert = value(i++); break;
		case '--key': o.key = value(i++); break;
		case '--ca': o.ca = value(i++); break;
		case '--expect-client-id': o.clientIds.push(value(i++)); break;
		case '--any-authority': o.anyAuthority = true; break;
		case '-h': case '--help': process.stdout.write(USAGE + '\n'); process.exit(0); break;
		default: usageError(`unknown argument '${argv[i]}'`);
		}
	}
	const m = /^(\d+\.\d+\.\d+\.\d+):(\d+)$/.exec(o.listen || '');
	if (!m)
		usageError('--listen IPv4:PORT is required');
	o.host = m[1];
	o.port = Number(m[2]);
	if (!o.cert || !o.key || !o.ca)
		usageError('--cert, --key and --ca are required');
	return o;
}

function log(obj) {
	process.stdout.write(JSON.stringify({ time: new Date().toISOString(), ...obj }) + '\n');
}

function uriSans(cert) {
	if (!cert || !cert.subjectaltname)
		return [];
	return cert.subjectaltname.split(', ')
		.filter((s) => s.startsWith('URI:'))
		.map((s) => s.slice(4));
}

function peerOf(socket) {
	if (!socket || socket.remoteAddress === undefined)
		return null;
	return `${socket.remoteAddress}:${socket.remotePort}`;
}

const opts = parseArgs(process.argv.slice(2));

const server = http2.createSecureServer({
	cert: fs.readFileSync(opts.cert),
	key: fs.readFileSync(opts.key),
	ca: fs.readFileSync(opts.ca),
	requestCert: true,
	rejectUnauthorized: true,
	minVersion: 'TLSv1.3',
	maxVersion: 'TLSv1.3',
	ciphers: TLS13_SUITES,
	ecdhCurve: 'X25519:P-256',
	ALPNProtocols: ['h2'],
	allowHTTP1: false,
	settings: {
		initialWindowSize: STREAM_WINDOW,
		maxFrameSize: MAX_FRAME,
		maxConcurrentStreams: MAX_STREAMS,
	},
});

server.on('session', (session) => {
	try {
		session.setLocalWindowSize(CONN_WINDOW);
	} catch (e) {
		// A tuning knob only.
	}
	session.on('error', (e) => log({ event: 'session-error', peer: peerOf(session.socket),
		error: e.message.trim() }));
});

// Handshakes the server refused (no client certificate, untrusted chain,
// TLS 1.2, ...): logged so a test can tell "refused" from "never arrived".
server.on('tlsClientError', (e, socket) => {
	log({ event: 'tls-error', peer: peerOf(socket), error: e.message.trim() });
});

// Checks one CONNECT's request headers; returns [status, reason].
function judge(headers, clientIds) {
	if (headers[':method'] !== 'CONNECT')
		return [405, `method ${headers[':method']} is not CONNECT`];
	if (headers[':scheme'] !== undefined || headers[':path'] !== undefined)
		return [400, 'CONNECT with :scheme or :path'];
	const m = /^(\d+\.\d+\.\d+\.\d+):(\d+)$/.exec(headers[':authority'] || '');
	if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535)
		return [400, `malformed :authority ${JSON.stringify(headers[':authority'])}`];
	if (!opts.anyAuthority && m[1] !== opts.host)
		return [400, `:authority IP ${m[1]} is not this pod (${opts.host})`];
	if (opts.clientIds.length && !clientIds.some((id) => opts.clientIds.includes(id)))
		return [401, `client identity ${JSON.stringify(clientIds)} not expected`];
	return [200, null];
}

server.on('stream', (stream, headers) => {
	const socket = stream.session.socket;
	const clientIds = uriSans(socket.getPeerCertificate());
	const [status, reason] = judge(headers, clientIds);
	const extra = {};
	for (const [k, v] of Object.entries(headers))
		if (!k.startsWith(':') && !['forwarded', 'baggage', 'traceparent'].includes(k))
			extra[k] = v;
	const authority = headers[':authority'];
	log({
		event: 'connect',
		peer: peerOf(socket),
		method: headers[':method'],
		authority,
		scheme: headers[':scheme'],
		path: headers[':path'],
		forwarded: headers.forwarded,
		baggage: headers.baggage,
		traceparent: headers.traceparent,
		otherHeaders: extra,
		clientIds,
		tls: { version: socket.getProtocol(), cipher: socket.getCipher().standardName,
			alpn: socket.alpnProtocol },
		status,
		reason,
	});
	if (status !== 200) {
		stream.respond({ ':status': status }, { endStream: true });
		return;
	}
	stream.respond({ ':status': 200 });
	// Echo with backpressure; http2 streams are duplex, our writable side
	// ends (END_STREAM) only after the client's END_STREAM arrived.
	const hash = crypto.createHash('sha256');
	let bytes = 0;
	stream.on('data', (buf) => {
		hash.update(buf);
		bytes += buf.length;
		if (!stream.write(buf)) {
			stream.pause();
			stream.once('drain', () => stream.resume());
		}
	});
	stream.on('end', () => {
		stream.end();
		log({ event: 'done', peer: peerOf(socket), authority, bytes,
			sha256: hash.digest('hex') });
	});
	stream.on('error', (e) => log({ event: 'stream-error', peer: peerOf(socket), authority,
		error: e.message, rstCode: stream.rstCode }));
	stream.on('close', () => {
		if (stream.rstCode)
			log({ event: 'stream-reset', peer: peerOf(socket), authority,
				rstCode: stream.rstCode });
	});
});

server.on('error', (e) => {
	log({ event: 'server-error', error: e.message });
	process.exit(1);
});

server.listen(opts.port, opts.host, () => {
	log({ event: 'listening', listen: `${opts.host}:${opts.port}`, node: process.version,
		openssl: process.versions.openssl, expectClientIds: opts.clientIds });
});

// Stopped by the test with SIGTERM: exit at once, streams and all.
for (const sig of ['SIGTERM', 'SIGINT'])
	process.on(sig, () => process.exit(0));
