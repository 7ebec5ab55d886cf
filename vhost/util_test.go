package vhost

import "github.com/dpkit/dpkit/internal/uds"

func dupFd(fd int) (int, error) { return uds.Dup(fd) }
