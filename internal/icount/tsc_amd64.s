#include "textflag.h"

// func Counter() uint64
TEXT ·Counter(SB), NOSPLIT, $0-8
	RDTSC
	SHLQ $32, DX
	ORQ  DX, AX
	MOVQ AX, ret+0(FP)
	RET

// func spin(n uint64): exactly 2n instructions in its loop (n ≥ 1).
TEXT ·spin(SB), NOSPLIT, $0-8
	MOVQ n+0(FP), CX
loop:
	DECQ CX
	JNZ  loop
	RET
