#!/usr/bin/env node
// SPDX-License-Identifier: Apache-2.0
//
// hbone-client.js: an HBONE client (DESIGN.md §3) built only on Node.js's own
// `tls` and `http2` modules, so ambientd's 15008 listener is exercised by an
// implementation that shares no code with it.
//
// One run = one TCP connection: TLS 1.3 (AES-GCM suites, ALPN h2, optional
// client certificate) and one HTTP/2 CONNECT stream to --authority, carrying
// the headers ztunnel sends (forwarded, baggage, traceparent). With status
// 200 it sends --bytes of random data, half-closes (END_STREAM) and reads the
// echo to the peer's END_STREAM, comparing sha256 both ways.
//
// --plain skips TLS and HTTP/2: a plain TCP echo check to --connect, used to
// drive traffic from an enrolled pod that the mesh then carries.
//
// Prints exactly one JSON line (the result) on stdout; exit status 0 when
// the expectation held (--expect-status, default 200, or --expect-refused),
// 1 when it did not, 2 on bad usage.
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const http2 = require('http2');
const net = require('net');
const tls = require('tls');

const TLS13_SUITES = 'TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384';
// Offered only with --tls-max 1.2, to prove the server refuses TLS 1.2.
const TLS12_SUITES = 'ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384';
const CHUNK = 64 * 1024;
// HTTP/2 settings of DESIGN.md §3 (window sizes, frame size).
const STREAM_WINDOW = 4 << 20;
const CONN_WINDOW = 16 << 20;
const MAX_FRAME = 1 << 20;

const USAGE = `usage: hbone-client.js --connect IP:PORT --authority IP:PORT --ca FILE
                       [--cert FILE --key FILE] [--expect-server-id URI]...
                       [--bytes N[K|M|G]] [--expect-status CODE | --expect-refused]
                       [--tls-max 1.2|1.3] [--forwarded VALUE] [--header NAME:VALUE]...
                       [--timeout MS]
       hbone-client.js --plain --connect IP:PORT --bytes N [--timeout MS]
Prints one JSON line; exit 0 if the expectation held, 1 if not, 2 on usage.`;

function usageError(msg) {
	process.stderr.write(`hbone-client.js: ${msg}\n${USAGE}\n`);
	process.exit(2);
}

function parseSize(s) {
	const m = /^(\d+)([KMG]?)$/.exec(s);
	if (!m)
		usageError(`bad size '${s}'`);
	return Number(m[1]) * { '': 1, K: 1024, M: 1 << 20, G: 1 << 30 }[m[2]];
}

function parseHostPort(s, what) {
	const m = /^(\d+\.\d+\.\d+\.\d+):(\d+)$/.exec(s || '');
	if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535)
		usageError(`${what} must be IPv4:PORT, got '${s}'`);
	return { host: m[1], port: Number(m[2]) };
}

function parseArgs(argv) {
	const o = {
		bytes: 0, expectStatus: 200, expectRefused: false, tlsMax: '1.3',
		serverIds: [], headers: [], timeout: 30000, plain: false,
	};
	const value = (i) => {
		if (i + 1 >= argv.length)
			usageError(`${argv[i]} needs a value`);
		return argv[i + 1];
	};
	for (let i = 0; i < argv.length; i++) {
		const a = argv[i];
		switch (a) {
		case '--connect': o.connect = value(i++); break;
		case '--authority': o.authority = value(i++); break;
		case '--ca': o.ca = value(i++); break;
		case '--cert': o.cert = value(i++); break;
		case '--key': o.key = value(i++); break;
		case '--expect-server-id': o.serverIds.push(value(i++)); break;
		case '--bytes': o.bytes = parseSize(value(i++)); break;
		case '--expect-status': o.expectStatus = Number(value(i++)); break;
		case '--expect-refused': o.expectRefused = true; break;
		case '--tls-max': o.tlsMax = value(i++); break;
		case '--forwarded': o.forwarded = value(i++); break;
		case '--header': o.headers.push(value(i++)); break;
		case '--timeout': o.timeout = Number(value(i++)); break;
		case '--plain': o.plain = true; break;
		case '-h': case '--help': process.stdout.write(USAGE + '\n'); process.exit(0); break;
		default: usageError(`unknown argument '${a}'`);
		}
	}
	o.dst = parseHostPort(o.connect, '--connect');
	if (o.plain)
		return o;
	parseHostPort(o.authority, '--authority');
	if (!o.ca)
		usageError('--ca is required');
	if (!o.cert !== !o.key)
		usageError('--cert and --key go together');
	if (o.tlsMax !== '1.2' && o.tlsMax !== '1.3')
		usageError('--tls-max is 1.2 or 1.3');
	if (!Number.isInteger(o.expectStatus) || o.expectStatus < 100 || o.expectStatus > 599)
		usageError('--expect-status must be an HTTP status code');
	if (!Number.isInteger(o.timeout) || o.timeout <= 0)
		usageError('--timeout must be a positive number of milliseconds');
	for (const h of o.headers)
		if (!/^[a-z0-9-]+:/.test(h))
			usageError(`--header wants lower-case-name:value, got '${h}'`);
	return o;
}

// URI SANs of a peer certificate as Node reports it ("URI:a, DNS:b, ...").
function uriSans(cert) {
	if (!cert || !cert.subjectaltname)
		return [];
	return cert.subjectaltname.split(', ')
		.filter((s) => s.startsWith('URI:'))
		.map((s) => s.slice(4));
}

// Random payload: writes `total` bytes to `w` honouring backpressure, hashing
// what it wrote; ends the writable side after the last byte (FIN or
// END_STREAM), then calls done().
function pump(w, total, hash, stats, done) {
	let left = total;
	const more = () => {
		while (left > 0) {
			const n = Math.min(CHUNK, left);
			const buf = crypto.randomBytes(n);
			hash.update(buf);
			left -= n;
			stats.sent += n;
			if (!w.write(buf)) {
				w.once('drain', more);
				return;
			}
		}
		w.end();
		done();
	};
	more();
}

const opts = parseArgs(process.argv.slice(2));
const started = Date.now();
const result = {
	mode: opts.plain ? 'plain' : 'hbone',
	connect: opts.connect,
	authority: opts.authority,
	ok: false,
	phase: 'connect', // connect -> tls -> response -> data -> done
	error: null,
	sent: 0,
	received: 0,
};
let finished = false;
// Set once there is a connection: closes it politely (GOAWAY, FIN), so the
// peer sees a clean end rather than a reset from an exiting process.
let closeConnection = (cb) => cb();

function finish(ok, error) {
	if (finished)
		return;
	finished = true;
	result.ok = ok;
	if (error && !result.error)
		result.error = String(error).trim();
	result.ms = Date.now() - started;
	const code = ok ? 0 : 1;
	process.exitCode = code;
	process.stdout.write(JSON.stringify(result) + '\n', () => {
		setTimeout(() => process.exit(code), 500).unref();
		closeConnection(() => process.exit(code));
	});
}

setTimeout(() => finish(false, `timeout after ${opts.timeout} ms in phase ${result.phase}`),
	opts.timeout).unref();

// Bytes from the peer: hashed; with no payload of ours, the first few hundred
// bytes are kept as text (e.g. what a whoami server said).
function onData(hash, buf) {
	hash.update(buf);
	if (result.sent === 0 && opts.bytes === 0) {
		result.text = (result.text || '') + buf.toString('utf8');
		if (result.text.length > 400)
			result.text = result.text.slice(0, 400);
	}
	result.received += buf.length;
}

function compareEcho(sentHash, recvHash) {
	result.sha256Sent = sentHash.digest('hex');
	result.sha256Received = recvHash.digest('hex');
	// Nothing sent (e.g. asking a whoami server): there is no echo to compare.
	if (opts.bytes === 0 && result.sent === 0) {
		result.match = null;
		return null;
	}
	result.match = result.sent === result.received && result.sha256Sent === result.sha256Received;
	if (!result.match)
		return `echo differs: sent ${result.sent} bytes, got ${result.received}`;
	return null;
}

function runPlain() {
	const sentHash = crypto.createHash('sha256');
	const recvHash = crypto.createHash('sha256');
	const sock = net.connect({ host: opts.dst.host, port: opts.dst.port });
	sock.on('connect', () => {
		result.phase = 'data';
		result.local = `${sock.localAddress}:${sock.localPort}`;
		pump(sock, opts.bytes, sentHash, result, () => {});
	});
	sock.on('data', (b) => onData(recvHash, b));
	sock.on('end', () => {
		result.phase = 'done';
		const err = compareEcho(sentHash, recvHash);
		finish(!err, err);
	});
	sock.on('error', (e) => finish(false, e.message));
}

function runHbone() {
	const tlsOpts = {
		host: opts.dst.host,
		port: opts.dst.port,
		ca: fs.readFileSync(opts.ca),
		ALPNProtocols: ['h2'],
		minVersion: opts.tlsMax === '1.2' ? 'TLSv1.2' : 'TLSv1.3',
		maxVersion: opts.tlsMax === '1.2' ? 'TLSv1.2' : 'TLSv1.3',
		ciphers: opts.tlsMax === '1.2' ? TLS12_SUITES : TLS13_SUITES,
		ecdhCurve: 'X25519:P-256',
		rejectUnauthorized: true,
		// SPIFFE: the chain is checked against --ca by OpenSSL; the name check
		// is "any URI SAN is an expected identity", never IP or DNS names.
		checkServerIdentity: (_host, cert) => {
			const ids = uriSans(cert);
			result.serverIds = ids;
			if (opts.serverIds.length && !ids.some((id) => opts.serverIds.includes(id)))
				return new Error(`server identity ${JSON.stringify(ids)} is not ` +
					`${JSON.stringify(opts.serverIds)}`);
			return undefined;
		},
	};
	if (opts.cert) {
		tlsOpts.cert = fs.readFileSync(opts.cert);
		tlsOpts.key = fs.readFileSync(opts.key);
	}
	let sock;
	try {
		sock = tls.connect(tlsOpts);
	} catch (e) {
		finish(false, e.message);
		return;
	}
	result.phase = 'tls';
	let gotSettings = false;
	let status = null;

	// Refused = TCP connected but no HTTP/2 conversation ever started: the
	// TLS handshake failed on our side, or (TLS 1.3: the client finishes its
	// half first) the server's alert or close arrived before its SETTINGS
	// frame. A refused TCP connect is not a refused handshake.
	let tcpUp = false;
	sock.once('connect', () => { tcpUp = true; });
	const failed = (msg) => {
		result.serverSettings = gotSettings;
		result.tcpConnected = tcpUp;
		if (opts.expectRefused && tcpUp && !gotSettings && status === null) {
			result.refused = true;
			finish(true, msg);
		} else {
			finish(false, msg);
		}
	};

	sock.on('secureConnect', () => {
		result.tls = {
			version: sock.getProtocol(),
			cipher: sock.getCipher().standardName || sock.getCipher().name,
			alpn: sock.alpnProtocol,
		};
		result.local = `${sock.localAddress}:${sock.localPort}`;
		result.phase = 'response';
		if (sock.alpnProtocol !== 'h2')
			failed(`ALPN negotiated ${JSON.stringify(sock.alpnProtocol)}, not h2`);
	});
	sock.on('error', (e) => failed(`tls: ${e.message}`));

	const session = http2.connect(`https://${opts.connect}`, {
		createConnection: () => sock,
		settings: {
			initialWindowSize: STREAM_WINDOW,
			maxFrameSize: MAX_FRAME,
			enablePush: false,
		},
	});
	session.on('error', (e) => failed(`h2 session: ${e.message}`));
	closeConnection = (cb) => {
		if (session.destroyed)
			return cb();
		session.close(cb);
		return undefined;
	};
	session.on('remoteSettings', (s) => {
		gotSettings = true;
		result.serverSettings = true;
		result.peerSettings = {
			initialWindowSize: s.initialWindowSize,
			maxFrameSize: s.maxFrameSize,
			maxConcurrentStreams: s.maxConcurrentStreams,
		};
	});
	session.on('connect', () => {
		try {
			session.setLocalWindowSize(CONN_WINDOW);
		} catch (e) {
			// Only a tuning knob; older Node releases lack it.
		}
	});
	session.on('goaway', (code) => { result.goaway = code; });
	session.on('close', () => failed(`connection closed in phase ${result.phase}`));

	// The CONNECT request exactly as ztunnel forms it: no :scheme, no :path.
	const local = () => `${sock.localAddress}:${sock.localPort}`;
	const headers = {
		':method': 'CONNECT',
		':authority': opts.authority,
		baggage: 'k8s.cluster.name=Kubernetes,k8s.namespace.name=default,' +
			'service.name=interop-client,service.version=latest',
		traceparent: `00-${crypto.randomBytes(16).toString('hex')}-` +
			`${crypto.randomBytes(8).toString('hex')}-00`,
	};
	for (const h of opts.headers) {
		const i = h.indexOf(':');
		headers[h.slice(0, i)] = h.slice(i + 1);
	}
	const sentHash = crypto.createHash('sha256');
	const recvHash = crypto.createHash('sha256');
	const open = () => {
		headers.forwarded = opts.forwarded || `for="${local()}"`;
		result.forwarded = headers.forwarded;
		let req;
		try {
			req = session.request(headers, { endStream: false });
		} catch (e) {
			failed(`request: ${e.message}`);
			return;
		}
		req.on('response', (h) => {
			status = Number(h[':status']);
			result.status = status;
			if (status !== opts.expectStatus || opts.expectRefused) {
				req.close(http2.constants.NGHTTP2_CANCEL);
				finish(false, `status ${status}, expected ` +
					(opts.expectRefused ? 'a refused handshake' : opts.expectStatus));
				return;
			}
			if (status !== 200) {
				// The expected error answer; close politely, we are done.
				req.close(http2.constants.NGHTTP2_NO_ERROR);
				finish(true, null);
				return;
			}
			result.phase = 'data';
			pump(req, opts.bytes, sentHash, result, () => {});
		});
		req.on('data', (b) => onData(recvHash, b));
		req.on('end', () => {
			if (status !== 200)
				return;
			result.phase = 'done';
			const err = compareEcho(sentHash, recvHash);
			finish(!err, err);
		});
		req.on('close', () => {
			result.rstCode = req.rstCode;
			if (status === null)
				failed(`stream closed before a response (RST_STREAM code ${req.rstCode})`);
			else if (status === 200 && result.phase !== 'done')
				finish(false, `stream closed in phase data (RST_STREAM code ${req.rstCode})`);
		});
		req.on('error', (e) => failed(`stream: ${e.message}`));
	};
	// The `forwarded` value needs our local port, known once TCP is up.
	if (sock.connecting)
		sock.once('connect', open);
	else
		open();
}

if (opts.plain)
	runPlain();
else
	runHbone();
