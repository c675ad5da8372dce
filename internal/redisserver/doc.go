// Package redisserver starts a redis-server on 127.0.0.1 as a child
// process, for tests and for tools that need a Redis of their own.
//
// Start runs the server in a directory the caller owns (its data files and
// redis.log) on a given or a free port, without RDB snapshots and, unless
// Options.AppendOnly, without persistence. The server runs in its own
// process group and dies with the process that started it (see package
// childproc). Stop sends SIGTERM (which writes the append-only file when
// enabled), then kills the process group after five seconds or when ctx
// ends; Start and Restart bring it back on the same port and directory.
//
// StartCluster starts a Redis Cluster of such servers (by default three
// masters with one replica each, cluster-node-timeout 1.5 s), joined with
// redis-cli --cluster create; Cluster.MasterOf and Server.Kill kill the
// master of a key's slot, and Cluster.WaitHealthy waits for the failover.
package redisserver
