/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The chained CNI plugin's wire contract with the node agent (ambientd
 * --cni-socket). The plugin connects to a unix stream socket, writes one
 * JSON object on one line and reads one JSON line back:
 *
 *   request:  {"command":"ADD"|"DEL"|"CHECK", "containerId":..., "netns":...,
 *              "ifname":..., "podNamespace":..., "podName":...,
 *              "ips":["198.18.1.10", ...]}
 *   reply:    {"ok":true, "captured":true|false}
 *             {"ok":false, "error":"why"}
 *
 * "captured" says whether the agent enrolled the pod (ADD) or has it as it
 * should (CHECK). The agent answers within CNI_AGENT_TIMEOUT_MS.
 */
#ifndef AMBIENTD_CNI_H
#define AMBIENTD_CNI_H

#define CNI_DEFAULT_SOCKET "/run/ambientd/cni.sock"
#define CNI_PLUGIN_TYPE "ambientd-cni"
#define CNI_AGENT_TIMEOUT_MS 5000
#define CNI_MAX_MESSAGE (64 * 1024)

#endif
