/*
 * mock_cluster.c -- librdkafka's mock Kafka cluster as a process, for running the functions suite against a
 * three-broker cluster that is not factlog.
 * Usage: mock_cluster BROKERS TOPIC:PARTITIONS...
 * Prints the bootstrap servers on one line, then serves until SIGTERM or SIGINT.
 */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s BROKERS [TOPIC:PARTITIONS...]\n", argv[0]);
		return 2;
	}
	sigset_t stop;
	sigemptyset(&stop);
	sigaddset(&stop, SIGINT);
	sigaddset(&stop, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &stop, NULL);
	char err[512];
	rd_kafka_conf_t *c = rd_kafka_conf_new();
	rd_kafka_conf_set(c, "log_level", "3", err, sizeof err);
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof err);
	if (rk == NULL) {
		fprintf(stderr, "mock_cluster: %s\n", err);
		return 1;
	}
	rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, atoi(argv[1]));
	if (mc == NULL) {
		fprintf(stderr, "mock_cluster: cannot create the mock cluster\n");
		return 1;
	}
	for (int i = 2; i < argc; i++) {
		char topic[256];
		int parts = 1;
		const char *colon = strchr(argv[i], ':');
		size_t n = colon ? (size_t)(colon - argv[i]) : strlen(argv[i]);
		if (n >= sizeof topic)
			return 2;
		memcpy(topic, argv[i], n);
		topic[n] = 0;
		if (colon)
			parts = atoi(colon + 1);
		if (rd_kafka_mock_topic_create(mc, topic, parts, 3) != RD_KAFKA_RESP_ERR_NO_ERROR) {
			fprintf(stderr, "mock_cluster: cannot create %s\n", topic);
			return 1;
		}
	}
	printf("%s\n", rd_kafka_mock_cluster_bootstraps(mc));
	fflush(stdout);
	int sig;
	sigwait(&stop, &sig);
	rd_kafka_mock_cluster_destroy(mc);
	rd_kafka_destroy(rk);
	return 0;
}
