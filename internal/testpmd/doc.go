// Package testpmd drives an interactive dpdk-testpmd for tests and benchmarks: the
// DPDK peer that dpkit's vhost-user back-end and front-end are measured against, and
// the DPDK pod of the vRouter example's benchmarks.
//
// Start runs testpmd (optionally in a network namespace, on a private hugetlbfs) as a
// child that dies with the test binary, waits for its prompt, and quits it when the
// test ends. Run sends one command and returns its output; Stats reads a port's
// counters. Each method fails the test on a timeout or an early exit.
package testpmd
