/*
 * version: pcsig's one version number, for --version, the Server header,
 * the man pages and pcsig-client.pc (the Makefile reads it from here).
 */
#ifndef PCSIG_VERSION_H
#define PCSIG_VERSION_H

#define PCSIG_VERSION "0.1.0"

#endif
