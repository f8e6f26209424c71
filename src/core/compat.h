/*
 * compat.h -- banned functions. Included by every .c file of factlog (after system headers).
 * Unbounded string writers break the build; use snprintf or the buf_t writers instead.
 */
#ifndef FL_CORE_COMPAT_H
#define FL_CORE_COMPAT_H

#include <stdio.h>
#include <string.h>

#pragma GCC poison strcpy strcat sprintf vsprintf gets

#endif
