/*
 * fsync_fail.c -- an LD_PRELOAD shim for fault tests: while the file named by FACTLOG_FAIL_FSYNC_FLAG
 * exists, fdatasync() and fsync() fail with EIO (after doing nothing), as a dying disk would report.
 * The test creates and removes the flag file to choose the moment.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef int (*sync_fn)(int);

/* dlsym returns an object pointer; copy it into a function pointer without a pedantic cast. */
static sync_fn next_symbol(const char *name)
{
	void *p = dlsym(RTLD_NEXT, name);
	sync_fn f;
	memcpy(&f, &p, sizeof f);
	return f;
}

static int should_fail(void)
{
	const char *flag = getenv("FACTLOG_FAIL_FSYNC_FLAG");
	return flag != NULL && access(flag, F_OK) == 0;
}

int fdatasync(int fd)
{
	static sync_fn real;
	if (should_fail()) {
		errno = EIO;
		return -1;
	}
	if (real == NULL)
		real = next_symbol("fdatasync");
	return real(fd);
}

int fsync(int fd)
{
	static sync_fn real;
	if (should_fail()) {
		errno = EIO;
		return -1;
	}
	if (real == NULL)
		real = next_symbol("fsync");
	return real(fd);
}
