// Package child starts child processes that die with the process that started them
// (PR_SET_PDEATHSIG with SIGKILL), so that a test binary ended by its -timeout or
// killed outright, or a demo killed with SIGKILL, leaves no QEMU guest, testpmd or
// vRouter running behind it.
//
// The kernel sends the signal when the thread that forked the child exits, and the Go
// runtime ends a thread whenever a goroutine exits while locked to it (as namespace
// helpers do on failure). So every child is forked from one goroutine that stays
// locked to its own thread for the life of the process.
package child
