import kafkajs from 'kafkajs';
import t from 'tap';
import { dlqTopic, ensureTopics } from '../../src/stream/topics.js';
import { testBrokers, uniqueName } from '../helpers/broker.js';

const { Kafka, logLevel, ConfigResourceTypes } = kafkajs;

t.test('ensureTopics creates the topics, the compacted catalog and the DLQs, idempotently', async (t) => {
  const brokers = await testBrokers();
  const interactions = uniqueName('clicks');
  const items = uniqueName('catalog');
  const first = await ensureTopics(brokers, { interactions, items, partitions: 3 });
  const all = [interactions, items, dlqTopic(interactions), dlqTopic(items)];
  t.same(first.created.sort(), [...all].sort());
  t.same(first.existing, []);

  const admin = new Kafka({ brokers: brokers.split(','), logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  t.teardown(() => admin.disconnect());
  const metadata = await admin.fetchTopicMetadata({ topics: all });
  const partitions = Object.fromEntries(metadata.topics.map((m) => [m.name, m.partitions.length]));
  t.same(partitions, { [interactions]: 3, [items]: 3, [dlqTopic(interactions)]: 1, [dlqTopic(items)]: 1 });
  const configs = await admin.describeConfigs({
    includeSynonyms: false,
    resources: all.map((name) => ({
      type: ConfigResourceTypes.TOPIC,
      name,
      configNames: ['cleanup.policy'],
    })),
  });
  const policy = Object.fromEntries(
    configs.resources.map((r) => [r.resourceName, r.configEntries[0]?.configValue]),
  );
  t.equal(policy[items], 'compact', 'the catalog is compacted');
  t.equal(policy[interactions], 'delete');
  t.equal(policy[dlqTopic(items)], 'delete', 'a DLQ keeps every rejected event');

  const again = await ensureTopics(brokers.split(','), { interactions, items, partitions: 5 });
  t.same(again.created, [], 'nothing created twice');
  t.same(again.existing.sort(), [...all].sort());
  t.match(again.warnings.join('\n'), /has 3 partitions, 5 asked/, 'a difference is reported, not applied');

  await t.rejects(ensureTopics(brokers, { interactions: 'x', items: 'x' }), {
    code: 'PME_ERR_CONFIG_INVALID',
  });
  await t.rejects(ensureTopics(brokers, { partitions: 0 }), { code: 'PME_ERR_CONFIG_INVALID' });
});
