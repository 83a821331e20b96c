/*
 * STRLIT: a string literal as the (pointer, length) pair of arguments that
 * buf_append, memcmp, memcpy... take, the length counted by the compiler
 * (sizeof - 1) instead of by hand: buf_append(b, STRLIT("HTTP/1.1 ")).
 * The "" around s makes anything but a literal a compile error (a pointer's
 * sizeof would silently be 8).
 */
#ifndef PCSIG_STRLIT_H
#define PCSIG_STRLIT_H

#define STRLIT_LEN(s) (sizeof("" s "") - 1)
#define STRLIT(s) ("" s ""), STRLIT_LEN(s)

#endif
