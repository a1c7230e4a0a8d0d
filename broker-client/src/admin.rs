//! Administration requests on `MQClient`: cluster and topic lists, topic and subscription-group
//! creation and deletion, consumer connections, all committed offsets of a broker, and offset
//! resets through the broker. Each method is one request to one peer; which brokers to ask (the
//! masters of a cluster, every name server) is the caller's choice, as in Java's admin tools.

use std::collections::BTreeMap;

use rmq_remoting::body::{
    self, ClusterInfo, ConsumerConnection, ConsumerOffsetWrapper, KvTable, SubscriptionGroupConfig,
    SubscriptionGroupWrapper, TopicList,
};
use rmq_remoting::header::TopicFilterType;
use rmq_remoting::header::{
    CommandHeader, DeleteKvConfigRequestHeader, DeleteSubscriptionGroupRequestHeader,
    DeleteTopicFromNamesrvRequestHeader, DeleteTopicRequestHeader,
    GetConsumerConnectionListRequestHeader, GetKvConfigRequestHeader, GetKvConfigResponseHeader,
    GetKvListByNamespaceRequestHeader, PutKvConfigRequestHeader, ResetOffsetRequestHeader,
    UpdateAndCreateTopicRequestHeader,
};
use rmq_remoting::{ExtFields, RemotingCommand, RequestCode, ResponseCode};

use crate::client::MQClient;
use crate::error::{ClientError, Result};
use crate::producer::{validate_topic, AUTO_CREATE_TOPIC_KEY};
use crate::remoting_client::expect_code;

/// A topic as UPDATE_AND_CREATE_TOPIC creates it on one broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicConfig {
    /// The topic's name.
    pub topic: String,
    /// Queues consumers read from.
    pub read_queue_nums: i32,
    /// Queues producers write to.
    pub write_queue_nums: i32,
    /// `body::perm` bits; 6 = read + write.
    pub perm: i32,
    /// Ordered topic (the name server then keeps an `orderTopicConf`).
    pub order: bool,
}

impl TopicConfig {
    /// Java's defaults: 8 read and 8 write queues, read + write.
    pub fn new(topic: impl Into<String>) -> Self {
        TopicConfig {
            topic: topic.into(),
            read_queue_nums: 8,
            write_queue_nums: 8,
            perm: body::perm::READ | body::perm::WRITE,
            order: false,
        }
    }
}

fn header_request<H: CommandHeader>(code: RequestCode, header: &H) -> RemotingCommand {
    RemotingCommand::request(code, header.to_ext_fields())
}

impl MQClient {
    /// GET_BROKER_CLUSTER_INFO from a name server: clusters, brokers and their addresses.
    pub async fn cluster_info(&self) -> Result<ClusterInfo> {
        self.namesrv().cluster_info().await
    }

    /// GET_ALL_TOPIC_LIST_FROM_NAMESERVER: every topic a name server knows, sorted.
    pub async fn topic_list(&self) -> Result<Vec<String>> {
        let cmd =
            RemotingCommand::request(RequestCode::GetAllTopicListFromNameserver, ExtFields::new());
        let (addr, resp) = self.namesrv().invoke(cmd).await?;
        let resp = expect_code(&addr, resp, &[ResponseCode::Success])?;
        let mut topics = body::from_json::<TopicList>(&resp.body)?.topic_list;
        topics.sort();
        Ok(topics)
    }

    /// UPDATE_AND_CREATE_TOPIC on one broker (which then registers it with the name servers).
    pub async fn create_topic(&self, broker_addr: &str, config: &TopicConfig) -> Result<()> {
        validate_topic(&config.topic)?;
        if config.read_queue_nums < 1 || config.write_queue_nums < 1 {
            return Err(ClientError::InvalidArgument(
                "a topic needs at least one read and one write queue".into(),
            ));
        }
        let header = UpdateAndCreateTopicRequestHeader {
            topic: config.topic.clone(),
            default_topic: AUTO_CREATE_TOPIC_KEY.to_owned(),
            read_queue_nums: config.read_queue_nums,
            write_queue_nums: config.write_queue_nums,
            perm: config.perm,
            topic_filter_type: TopicFilterType::SingleTag,
            topic_sys_flag: Some(0),
            order: config.order,
            attributes: None,
            force: None,
        };
        let cmd = header_request(RequestCode::UpdateAndCreateTopic, &header);
        let resp = self.invoke_broker(broker_addr, cmd, None).await?;
        expect_code(broker_addr, resp, &[ResponseCode::Success])?;
        self.invalidate_route(&config.topic);
        Ok(())
    }

    /// DELETE_TOPIC_IN_BROKER: drops the topic's configuration (and queues) on one broker.
    pub async fn delete_topic_in_broker(&self, broker_addr: &str, topic: &str) -> Result<()> {
        let header = DeleteTopicRequestHeader {
            topic: topic.to_owned(),
        };
        let cmd = header_request(RequestCode::DeleteTopicInBroker, &header);
        let resp = self.invoke_broker(broker_addr, cmd, None).await?;
        expect_code(broker_addr, resp, &[ResponseCode::Success])?;
        self.invalidate_route(topic);
        Ok(())
    }

    /// DELETE_TOPIC_IN_NAMESRV on every configured name server (each keeps its own table).
    pub async fn delete_topic_in_namesrv(&self, topic: &str) -> Result<()> {
        let header = DeleteTopicFromNamesrvRequestHeader {
            topic: topic.to_owned(),
            cluster_name: None,
        };
        for addr in self.namesrv().addrs() {
            let cmd = header_request(RequestCode::DeleteTopicInNamesrv, &header);
            let resp = self.remoting().invoke(addr, cmd).await?;
            expect_code(addr, resp, &[ResponseCode::Success])?;
        }
        self.invalidate_route(topic);
        Ok(())
    }

    /// UPDATE_AND_CREATE_SUBSCRIPTIONGROUP on one broker (the body is the whole configuration).
    pub async fn create_subscription_group(
        &self,
        broker_addr: &str,
        config: &SubscriptionGroupConfig,
    ) -> Result<()> {
        validate_topic(&config.group_name).map_err(|_| {
            ClientError::InvalidArgument(format!("bad group name {:?}", config.group_name))
        })?;
        let cmd = RemotingCommand::request(
            RequestCode::UpdateAndCreateSubscriptiongroup,
            ExtFields::new(),
        )
        .with_body(body::to_json(config));
        let resp = self.invoke_broker(broker_addr, cmd, None).await?;
        expect_code(broker_addr, resp, &[ResponseCode::Success]).map(|_| ())
    }

    /// GET_ALL_SUBSCRIPTIONGROUP_CONFIG: every group configuration of one broker.
    pub async fn subscription_groups(&self, broker_addr: &str) -> Result<SubscriptionGroupWrapper> {
        let cmd =
            RemotingCommand::request(RequestCode::GetAllSubscriptiongroupConfig, ExtFields::new());
        let resp = self.invoke_broker(broker_addr, cmd, None).await?;
        let resp = expect_code(broker_addr, resp, &[ResponseCode::Success])?;
        Ok(body::from_json(&resp.body)?)
    }

    /// DELETE_SUBSCRIPTIONGROUP on one broker.
    pub async fn delete_subscription_group(&self, broker_addr: &str, group: &str) -> Result<()> {
        let header = DeleteSubscriptionGroupRequestHeader {
            group_name: group.to_owned(),
            clean_offset: None,
        };
        let cmd = header_request(RequestCode::DeleteSubscriptiongroup, &header);
        let resp = self.invoke_broker(broker_addr, cmd, None).await?;
        expect_code(broker_addr, resp, &[ResponseCode::Success]).map(|_| ())
    }

    /// GET_CONSUMER_CONNECTION_LIST: the group's live connections on one broker; `None` when the
    /// broker has none (CONSUMER_NOT_ONLINE).
    pub async fn consumer_connections(
        &self,
        broker_addr: &str,
        group: &str,
    ) -> Result<Option<ConsumerConnection>> {
        let header = GetConsumerConnectionListRequestHeader {
            consumer_group: group.to_owned(),
        };
        let cmd = header_request(RequestCode::GetConsumerConnectionList, &header);
        let resp = self.invoke_broker(broker_addr, cmd, None).await?;
        match resp.response_code() {
            ResponseCode::Success => Ok(Some(body::from_json(&resp.body)?)),
            ResponseCode::ConsumerNotOnline => Ok(None),
            code => Err(ClientError::Broker {
                addr: broker_addr.to_owned(),
                code,
                remark: resp.remark,
            }),
        }
    }

    /// GET_ALL_CONSUMER_OFFSET: every committed offset of one broker (all groups and topics).
    pub async fn all_consumer_offsets(&self, broker_addr: &str) -> Result<ConsumerOffsetWrapper> {
        let cmd = RemotingCommand::request(RequestCode::GetAllConsumerOffset, ExtFields::new());
        let resp = self.invoke_broker(broker_addr, cmd, None).await?;
        let resp = expect_code(broker_addr, resp, &[ResponseCode::Success])?;
        Ok(body::from_json(&resp.body)?)
    }

    /// INVOKE_BROKER_TO_RESET_OFFSET (forced) on one broker: the group's offsets of `topic` move
    /// to the first message stored at or after `timestamp_ms` (-1: the end of each queue).
    /// Returns `false` when the broker could only have told online clients and there are none
    /// (CONSUMER_NOT_ONLINE, 4.9 brokers); the caller then commits offsets itself.
    pub async fn reset_offset_by_broker(
        &self,
        broker_addr: &str,
        group: &str,
        topic: &str,
        timestamp_ms: i64,
    ) -> Result<bool> {
        let header = ResetOffsetRequestHeader {
            topic: topic.to_owned(),
            group: group.to_owned(),
            queue_id: None,
            offset: None,
            timestamp: timestamp_ms,
            is_force: true,
        };
        let cmd = header_request(RequestCode::InvokeBrokerToResetOffset, &header);
        let resp = self.invoke_broker(broker_addr, cmd, None).await?;
        match resp.response_code() {
            ResponseCode::Success => Ok(true),
            ResponseCode::ConsumerNotOnline => Ok(false),
            code => Err(ClientError::Broker {
                addr: broker_addr.to_owned(),
                code,
                remark: resp.remark,
            }),
        }
    }

    // ---- name-server KV configuration (docs/protocol.md §9.12) ------------------------------

    /// PUT_KV_CONFIG on every configured name server: each keeps (and persists) its own table,
    /// so a value written to all survives the loss or restart of any of them. Every server is
    /// tried; the first failure is returned after the others were written.
    pub async fn put_kv_config(&self, namespace: &str, key: &str, value: &str) -> Result<()> {
        let header = PutKvConfigRequestHeader {
            namespace: namespace.to_owned(),
            key: key.to_owned(),
            value: value.to_owned(),
        };
        self.on_every_namesrv(RequestCode::PutKvConfig, &header)
            .await
    }

    /// DELETE_KV_CONFIG on every configured name server (SUCCESS whether or not the key was
    /// there).
    pub async fn delete_kv_config(&self, namespace: &str, key: &str) -> Result<()> {
        let header = DeleteKvConfigRequestHeader {
            namespace: namespace.to_owned(),
            key: key.to_owned(),
        };
        self.on_every_namesrv(RequestCode::DeleteKvConfig, &header)
            .await
    }

    async fn on_every_namesrv<H: CommandHeader>(
        &self,
        code: RequestCode,
        header: &H,
    ) -> Result<()> {
        let mut first_err = None;
        for addr in self.namesrv().addrs() {
            let r = match self
                .remoting()
                .invoke(addr, header_request(code, header))
                .await
            {
                Ok(resp) => expect_code(addr, resp, &[ResponseCode::Success]).map(|_| ()),
                Err(e) => Err(e),
            };
            if let Err(e) = r {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// GET_KV_CONFIG from a name server (with failover): `None` when the key is absent
    /// (QUERY_NOT_FOUND).
    pub async fn get_kv_config(&self, namespace: &str, key: &str) -> Result<Option<String>> {
        let header = GetKvConfigRequestHeader {
            namespace: namespace.to_owned(),
            key: key.to_owned(),
        };
        let (addr, resp) = self
            .namesrv()
            .invoke(header_request(RequestCode::GetKvConfig, &header))
            .await?;
        match resp.response_code() {
            ResponseCode::Success => Ok(GetKvConfigResponseHeader::from_command(&resp)?.value),
            ResponseCode::QueryNotFound => Ok(None),
            code => Err(ClientError::Broker {
                addr,
                code,
                remark: resp.remark,
            }),
        }
    }

    /// GET_KVLIST_BY_NAMESPACE from one name server: every key of `namespace` with its value,
    /// empty when the namespace holds none (QUERY_NOT_FOUND). Ask each of
    /// `self.namesrv().addrs()` to see what each one holds.
    pub async fn kv_list_from(
        &self,
        namesrv_addr: &str,
        namespace: &str,
    ) -> Result<BTreeMap<String, String>> {
        let header = GetKvListByNamespaceRequestHeader {
            namespace: namespace.to_owned(),
        };
        let resp = self
            .remoting()
            .invoke(
                namesrv_addr,
                header_request(RequestCode::GetKvlistByNamespace, &header),
            )
            .await?;
        match resp.response_code() {
            ResponseCode::Success if resp.body.is_empty() => Ok(BTreeMap::new()),
            ResponseCode::Success => Ok(body::from_json::<KvTable>(&resp.body)?.table),
            ResponseCode::QueryNotFound => Ok(BTreeMap::new()),
            code => Err(ClientError::Broker {
                addr: namesrv_addr.to_owned(),
                code,
                remark: resp.remark,
            }),
        }
    }
}
