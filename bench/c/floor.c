/* The floor: the least an init can do, for the benchmark to measure the others against.
 * Block every signal, fork and exec the command, then take each signal with sigwaitinfo:
 * SIGCHLD reaps (and ends with the main child's status), anything else goes to the child.
 * No options, no terminal, no error messages. Usage: floor COMMAND [ARG...] */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
	sigset_t all, inherited;
	siginfo_t info;
	int sig, status;
	pid_t child, pid;

	if (argc < 2)
		return 2;
	sigfillset(&all);
	sigprocmask(SIG_SETMASK, &all, &inherited);
	child = fork();
	if (child == 0) {
		sigprocmask(SIG_SETMASK, &inherited, NULL);
		execvp(argv[1], argv + 1);
		_exit(127);
	}
	for (;;) {
		sig = sigwaitinfo(&all, &info);
		if (sig < 0)
			continue;
		if (sig != SIGCHLD) {
			kill(child, sig);
			continue;
		}
		while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
			if (pid == child)
				return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	}
}
